// A real OpenID Provider (panva/oidc-provider, OpenID Certified) for the console's tests.
// Configured entirely from the environment by tests/conftest.py:
//   PORT         port on 127.0.0.1
//   OP_SHAPE     "plain" (default): issuer http://127.0.0.1:PORT with oidc-provider's own paths;
//                "keycloak": a Keycloak realm, issuer http://127.0.0.1:PORT/realms/OP_REALM and
//                Keycloak's /protocol/openid-connect/... paths;
//                "cognito": a Cognito hosted-UI domain (/oauth2/authorize, /oauth2/token,
//                /oauth2/userInfo, /oauth2/revoke, /logout), no PKCE required, as Cognito does
//   OP_REALM     the realm of the keycloak shape (default diffgram-realm)
//   OP_CLIENTS   JSON list of client metadata
//   OP_ACCOUNTS  JSON object: login name -> { sub, email, name, groups }
//   OP_JWKS      JSON private JWKS used to sign (switch it to rotate keys)
import http from 'node:http';
import Provider from 'oidc-provider';

const port = Number(process.env.PORT);
const shape = process.env.OP_SHAPE || 'plain';
const realm = process.env.OP_REALM || 'diffgram-realm';
const accounts = JSON.parse(process.env.OP_ACCOUNTS || '{}');

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

const configuration = {
  clients: JSON.parse(process.env.OP_CLIENTS || '[]'),
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
    devInteractions: { enabled: true }, // the login form (field "login") and consent form
    rpInitiatedLogout: { enabled: true },
    revocation: { enabled: true },
  },
  // The login pages live below the mount, like every other endpoint of a Keycloak realm.
  interactions: { url: (ctx, interaction) => `${mount}/interaction/${interaction.uid}` },
  async findAccount(ctx, id) {
    const account = accounts[id] || { sub: id };
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
}

const provider = new Provider(issuer, configuration);
const handle = provider.callback();
http
  .createServer((req, res) => {
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
  })
  .listen(port, '127.0.0.1', () => {
    console.log(`oidc-provider (${shape}) listening on ${issuer}`);
  });
