// A real OpenID Provider (panva/oidc-provider, OpenID Certified) for the console's tests.
// Configured entirely from the environment by tests/conftest.py:
//   PORT         port on 127.0.0.1; the issuer is http://127.0.0.1:PORT
//   OP_CLIENTS   JSON list of client metadata
//   OP_ACCOUNTS  JSON object: login name -> { sub, email, name, groups }
//   OP_JWKS      JSON private JWKS used to sign (switch it to rotate keys)
import Provider from 'oidc-provider';

const port = Number(process.env.PORT);
const issuer = `http://127.0.0.1:${port}`;
const accounts = JSON.parse(process.env.OP_ACCOUNTS || '{}');

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
  },
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

const provider = new Provider(issuer, configuration);
provider.listen(port, '127.0.0.1', () => {
  console.log(`oidc-provider listening on ${issuer}`);
});
