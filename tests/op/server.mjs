// A real OpenID Provider (panva/oidc-provider, OpenID Certified) for the console's tests.
// Configured entirely from the environment by tests/support.py (NodeOP):
//   PORT         port on 127.0.0.1
//   OP_SHAPE     "plain" (default): issuer http://127.0.0.1:PORT with oidc-provider's own paths
//                and its development login and consent pages (any password);
//                "keycloak": a Keycloak realm, issuer http://127.0.0.1:PORT/realms/OP_REALM,
//                Keycloak's /protocol/openid-connect/... paths, and the part of Keycloak's admin
//                API that Diffgram's start-up and the console use (below);
//                "cognito": a Cognito hosted-UI domain (/oauth2/authorize, /oauth2/token,
//                /oauth2/userInfo, /oauth2/revoke, /logout), no PKCE required, as Cognito does.
//                Both check passwords on a login form (fields username, password) and ask no
//                consent, as Keycloak and Cognito do for their own clients.
//   OP_REALM     the realm of the keycloak shape (default diffgram-realm)
//   OP_CLIENTS   JSON list of client metadata (keycloak shape: clients made by hand in the admin
//                console, whose internal ids are UUIDs)
//   OP_CLIENTS_FILE  the same list in a file (an environment variable holds at most 128 KiB:
//                a client with 10,000 callbacks does not fit)
//   OP_ACCOUNTS  JSON object: login name -> { sub, email, name, groups, password }
//   OP_JWKS      JSON private JWKS used to sign (switch it to rotate keys)
//   OP_KEYCLOAK_ADMIN  keycloak shape: "user:password" of the master realm's admin
//                (default admin:admin)
//   OP_COGNITO_POOL    cognito shape: JSON { endpoint, region, pool }: accounts not in
//                OP_ACCOUNTS are the user pool's, checked with its InitiateAuth
//                (USER_PASSWORD_AUTH) and read with AdminGetUser, on a moto server
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import Provider from 'oidc-provider';
import MemoryAdapter from 'oidc-provider/lib/adapters/memory_adapter.js';

const port = Number(process.env.PORT);
const shape = process.env.OP_SHAPE || 'plain';
const realm = process.env.OP_REALM || 'diffgram-realm';
const accounts = new Map(Object.entries(JSON.parse(process.env.OP_ACCOUNTS || '{}')));
const cognitoPool = process.env.OP_COGNITO_POOL ? JSON.parse(process.env.OP_COGNITO_POOL) : null;
const [adminUser, adminPassword] = (process.env.OP_KEYCLOAK_ADMIN || 'admin:admin').split(':');

// Where the provider lives below the host, and its endpoints below that.
const MOUNTS = { plain: '', keycloak: `/realms/${realm}`, cognito: '' };
const KEYCLOAK_OIDC = '/protocol/openid-connect';
const ROUTES = {
  plain: undefined,
  keycloak: {
    authorization: `${KEYCLOAK_OIDC}/auth`,
    token: `${KEYCLOAK_OIDC}/token`,
    userinfo: `${KEYCLOAK_OIDC}/userinfo`,
    end_session: `${KEYCLOAK_OIDC}/logout`,
    revocation: `${KEYCLOAK_OIDC}/revoke`,
    jwks: `${KEYCLOAK_OIDC}/certs`,
  },
  cognito: {
    authorization: '/oauth2/authorize',
    token: '/oauth2/token',
    userinfo: '/oauth2/userInfo',
    end_session: '/logout',
    revocation: '/oauth2/revoke',
    jwks: '/.well-known/jwks.json',
  },
};
if (!(shape in MOUNTS)) throw new Error(`unknown OP_SHAPE ${shape}`);
const mount = MOUNTS[shape];
const issuer = `http://127.0.0.1:${port}${mount}`;
const passwordLogin = shape !== 'plain';
const clients = JSON.parse(
  process.env.OP_CLIENTS_FILE
    ? fs.readFileSync(process.env.OP_CLIENTS_FILE, 'utf8')
    : process.env.OP_CLIENTS || '[]',
);

// Clients made through Keycloak's admin API (Diffgram's start-up) live here, by client_id.
// Those of OP_CLIENTS were made by hand in the admin console: their internal ids are UUIDs.
const dynamicClients = new Map();
const handMade = new Map(clients.map((c) => [c.client_id, crypto.randomUUID()]));
class Adapter extends MemoryAdapter {
  async find(id) {
    if (this.model === 'Client') return dynamicClients.get(id);
    return super.find(id);
  }
}

const CLAIMS = ['sub', 'email', 'email_verified', 'name', 'preferred_username', 'groups'];

const configuration = {
  adapter: Adapter,
  clients,
  jwks: process.env.OP_JWKS ? JSON.parse(process.env.OP_JWKS) : undefined,
  cookies: { keys: ['console-test-op-cookie-key'] },
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username'],
    groups: ['groups'],
  },
  scopes: ['openid', 'email', 'profile', 'groups', 'offline_access'],
  features: {
    devInteractions: { enabled: !passwordLogin }, // plain: a login form (any password) and consent
    rpInitiatedLogout: { enabled: true },
    revocation: { enabled: true },
  },
  // The login pages live below the mount, like every other endpoint of a Keycloak realm.
  interactions: { url: (ctx, interaction) => `${mount}/interaction/${interaction.uid}` },
  async findAccount(ctx, id) {
    const account = accounts.get(id) || { sub: id };
    return {
      accountId: id,
      async claims() {
        return {
          sub: account.sub || id,
          email: account.email,
          email_verified: true,
          name: account.name,
          preferred_username: id,
          groups: account.groups || [],
        };
      },
    };
  },
};
if (ROUTES[shape]) {
  configuration.routes = ROUTES[shape];
  // Keycloak and Cognito hand out refresh tokens with every code exchange (no offline_access
  // needed), and neither requires PKCE, which Diffgram does not send.
  configuration.issueRefreshToken = async (ctx, client) => client.grantTypeAllowed('refresh_token');
  configuration.pkce = { required: () => false };
  // No consent page: the grant covers whatever the client asks for.
  configuration.loadExistingGrant = async (ctx) => {
    const { Grant } = ctx.oidc.provider;
    const known = ctx.oidc.result?.consent?.grantId
      || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    const grant = (known && (await Grant.find(known)))
      || new Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
    grant.addOIDCScope(ctx.oidc.params.scope || 'openid');
    grant.addOIDCClaims(CLAIMS);
    await grant.save();
    return grant;
  };
}

const provider = new Provider(issuer, configuration);
const handle = provider.callback();

// --- request helpers -------------------------------------------------------------------------

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (chunk) => chunks.push(chunk));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

async function form(req) {
  return Object.fromEntries(new URLSearchParams(await readBody(req)));
}

async function json(req) {
  const text = await readBody(req);
  return text ? JSON.parse(text) : {};
}

function send(res, status, body, headers = {}) {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  const type = typeof body === 'string' ? 'text/html; charset=utf-8' : 'application/json';
  res.writeHead(status, { 'Content-Type': type, ...headers }).end(text);
}

const escape = (text) => String(text ?? '').replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

// --- the login form that checks passwords (keycloak and cognito shapes) ------------------------

function loginPage(uid, { username = '', error = '', heading = 'Sign in to your account' } = {}) {
  return `<!doctype html><html><head><title>${escape(heading)}</title></head><body>
<h1>${escape(heading)}</h1>
${error ? `<p class="error" role="alert">${escape(error)}</p>` : ''}
<form method="post" action="${mount}/interaction/${escape(uid)}/login">
  <label>Username <input type="text" name="username" value="${escape(username)}"></label>
  <label>Password <input type="password" name="password"></label>
  <button type="submit">Sign in</button>
</form></body></html>`;
}

async function awsCall(target, body) {
  const { endpoint, region } = cognitoPool;
  const answer = await fetch(`${endpoint.replace(/\/$/, '')}/`, {
    method: 'POST',
    headers: {
      'Content-Type': 'application/x-amz-json-1.1',
      'X-Amz-Target': `AWSCognitoIdentityProviderService.${target}`,
      // moto reads the region from the credential scope; it checks no signature.
      Authorization: `AWS4-HMAC-SHA256 Credential=testing/20240101/${region}/cognito-idp/aws4_request, SignedHeaders=host, Signature=0`,
    },
    body: JSON.stringify(body),
  });
  return { ok: answer.ok, body: await answer.json() };
}

// Whether `password` is right for `username`: null when it is, else what the page says.
async function checkPassword(username, password, clientId) {
  const known = accounts.get(username);
  if (known && known.password !== undefined) {
    return known.password === password ? null : 'Incorrect username or password.';
  }
  if (!cognitoPool) return 'Incorrect username or password.';
  const auth = await awsCall('InitiateAuth', {
    AuthFlow: 'USER_PASSWORD_AUTH',
    ClientId: clientId,
    AuthParameters: { USERNAME: username, PASSWORD: password },
  });
  if (!auth.ok) return auth.body.message || 'Incorrect username or password.';
  if (auth.body.ChallengeName) return `Cognito asks for more: ${auth.body.ChallengeName}.`;
  const user = await awsCall('AdminGetUser', { UserPoolId: cognitoPool.pool, Username: username });
  const attributes = Object.fromEntries(
    (user.body.UserAttributes || []).map(({ Name, Value }) => [Name, Value]),
  );
  accounts.set(username, { sub: attributes.sub, email: attributes.email });
  return null;
}

async function interactions(req, res, path) {
  const match = path.match(new RegExp(`^${mount}/interaction/([^/]+)(/login)?$`));
  if (!match) return false;
  const details = await provider.interactionDetails(req, res);
  if (req.method === 'POST' && match[2]) {
    const { username = '', password = '' } = await form(req);
    const refused = await checkPassword(username, password, details.params.client_id);
    if (refused) {
      send(res, 200, loginPage(match[1], { username, error: refused }));
      return true;
    }
    await provider.interactionFinished(
      req, res, { login: { accountId: username } }, { mergeWithLastSubmission: false },
    );
    return true;
  }
  send(res, 200, loginPage(match[1]));
  return true;
}

// --- Keycloak's admin API, as much of it as Diffgram's start-up and the console use -----------

const adminTokens = new Set();
const realms = new Set([realm]);
const realmUsers = new Map(); // id -> { id, username, email }

function realmUserByName(username) {
  return [...realmUsers.values()].find((user) => user.username === username);
}

function setPassword(user, password) {
  accounts.set(user.username, { sub: user.id, email: user.email, password });
}

async function keycloakAdmin(req, res, path) {
  if (path === '/realms/master/protocol/openid-connect/token' && req.method === 'POST') {
    const { grant_type: grant, username, password } = await form(req);
    if (grant !== 'password' || username !== adminUser || password !== adminPassword) {
      send(res, 401, { error: 'invalid_grant', error_description: 'Invalid user credentials' });
      return true;
    }
    const token = crypto.randomBytes(24).toString('hex');
    adminTokens.add(token);
    send(res, 200, { access_token: token, token_type: 'Bearer', expires_in: 60 });
    return true;
  }
  if (!path.startsWith('/admin/realms')) return false;
  const bearer = (req.headers.authorization || '').replace(/^Bearer /, '');
  if (!adminTokens.has(bearer)) {
    send(res, 401, { error: 'HTTP 401 Unauthorized' });
    return true;
  }
  const parts = path.split('/').slice(3).map(decodeURIComponent); // [realm, collection, id, ...]
  const [name, collection, id, sub] = parts;
  const query = new URL(req.url, issuer).searchParams;
  if (!name) {
    if (req.method !== 'POST') return send(res, 405, {}), true;
    const wanted = (await json(req)).realm;
    if (realms.has(wanted)) return send(res, 409, { errorMessage: 'Conflict detected.' }), true;
    realms.add(wanted);
    res.writeHead(201).end();
    return true;
  }
  if (!realms.has(name)) return send(res, 404, { error: 'Realm not found.' }), true;
  if (collection === 'clients') {
    if (!id && req.method === 'POST') {
      const rep = await json(req);
      const internalId = rep.id || crypto.randomUUID();
      const clientId = rep.clientId || rep.name || internalId;
      const taken = [...dynamicClients.values()].some(
        (c) => c.internal_id === internalId || c.client_id === clientId,
      );
      if (taken || handMade.has(clientId)) {
        return send(res, 409, { errorMessage: `Client ${clientId} already exists` }), true;
      }
      dynamicClients.set(clientId, {
        client_id: clientId,
        internal_id: internalId,
        client_secret: crypto.randomBytes(16).toString('hex'),
        token_endpoint_auth_method: 'client_secret_post',
        redirect_uris: rep.redirectUris || [],
        grant_types: ['authorization_code', 'refresh_token'],
      });
      res.writeHead(201, { Location: `${issuer}/clients/${internalId}` }).end();
      return true;
    }
    const client = [...dynamicClients.values()].find((c) => c.internal_id === id);
    if (!client) return send(res, 404, { error: 'Could not find client' }), true;
    if (sub === 'client-secret' && req.method === 'GET') {
      return send(res, 200, { type: 'secret', value: client.client_secret }), true;
    }
    if (!sub && req.method === 'GET') {
      return send(res, 200, { id: client.internal_id, clientId: client.client_id, redirectUris: client.redirect_uris }), true;
    }
    if (!sub && req.method === 'PUT') {
      const rep = await json(req);
      // A new object: oidc-provider caches clients by their metadata.
      dynamicClients.set(client.client_id, { ...client, redirect_uris: rep.redirectUris ?? client.redirect_uris });
      res.writeHead(204).end();
      return true;
    }
    return send(res, 405, {}), true;
  }
  if (collection === 'users') {
    if (!id && req.method === 'POST') {
      const rep = await json(req);
      if (realmUserByName(rep.username)) {
        return send(res, 409, { errorMessage: 'User exists with same username' }), true;
      }
      const user = { id: crypto.randomUUID(), username: rep.username, email: rep.email };
      realmUsers.set(user.id, user);
      const credential = (rep.credentials || []).find((c) => c.type === 'password');
      setPassword(user, credential ? credential.value : crypto.randomBytes(16).toString('hex'));
      res.writeHead(201, { Location: `${issuer}/users/${user.id}` }).end();
      return true;
    }
    if (!id && req.method === 'GET') {
      const wanted = query.get('username');
      const found = [...realmUsers.values()].filter((u) => !wanted || u.username === wanted);
      return send(res, 200, found.map((u) => ({ id: u.id, username: u.username, email: u.email }))), true;
    }
    const user = realmUsers.get(id);
    if (!user) return send(res, 404, { error: 'User not found' }), true;
    if (sub === 'reset-password' && req.method === 'PUT') {
      setPassword(user, (await json(req)).value);
      res.writeHead(204).end();
      return true;
    }
    if (!sub && req.method === 'DELETE') {
      realmUsers.delete(id);
      accounts.delete(user.username);
      res.writeHead(204).end();
      return true;
    }
    return send(res, 405, {}), true;
  }
  send(res, 404, { error: 'not found' });
  return true;
}

// --- the server ----------------------------------------------------------------------------------

http
  .createServer(async (req, res) => {
    try {
      const path = req.url.split('?')[0];
      if (shape === 'keycloak' && (await keycloakAdmin(req, res, path))) return;
      if (passwordLogin && (await interactions(req, res, path))) return;
      if (mount) {
        if (req.url !== mount && !req.url.startsWith(`${mount}/`)) {
          res.writeHead(404).end('not found');
          return;
        }
        // As a framework mounting the provider would: oidc-provider reads the mount path from
        // the difference between originalUrl and url.
        req.originalUrl = req.url;
        req.url = req.url.slice(mount.length) || '/';
      }
      handle(req, res);
    } catch (error) {
      console.error(error);
      if (!res.headersSent) send(res, 500, { error: 'server_error', error_description: String(error) });
    }
  })
  .listen(port, '127.0.0.1', () => {
    console.log(`oidc-provider (${shape}) listening on ${issuer}`);
  });
