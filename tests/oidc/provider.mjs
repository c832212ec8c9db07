// A real OpenID provider on loopback for the Google login tests (oidc-provider, the certified
// Node implementation). It stands in for accounts.google.com: discovery, JWKS, authorization with
// PKCE and nonce, the token endpoint, and ID tokens carrying email, email_verified and name.
//
//   node tests/oidc/provider.mjs [port]      (or OIDC_PORT; 0 or nothing picks a free port)
//
// Prints `READY http://127.0.0.1:PORT` once it answers. The issuer is that URL.
//
// Accounts: any login is accepted; the account id IS the email. `email_verified` is true unless
// the email starts with `unverified`. The development interactions are driven with plain HTTP:
// GET /auth?... -> /interaction/:uid; POST /interaction/:uid prompt=login&login=EMAIL; then
// POST /interaction/:uid prompt=consent; the last resume redirects to redirect_uri?code=...
//
// Test hook: POST /__test/rotate-keys signs with a new RSA key from then on (the JWKS lists the
// new key first and still lists the old one), as a provider rotating its keys would.
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { createServer } from 'node:http';

import Provider from 'oidc-provider';

export const CLIENTS = [
  {
    client_id: 'identity-test',
    client_secret: 'identity-test-secret',
    redirect_uris: ['http://127.0.0.1/google/callback', 'http://localhost/google/callback'],
    response_types: ['code'],
    grant_types: ['authorization_code'],
    token_endpoint_auth_method: 'client_secret_post',
  },
  {
    // Another application of the same provider: its tokens are not for us.
    client_id: 'other-app',
    client_secret: 'other-app-secret',
    redirect_uris: ['http://127.0.0.1/other/callback'],
    response_types: ['code'],
    grant_types: ['authorization_code'],
    token_endpoint_auth_method: 'client_secret_post',
  },
];

function rsaKey() {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid: randomUUID(), alg: 'RS256', use: 'sig' };
}

function makeProvider(issuer, keys) {
  const provider = new Provider(issuer, {
    clients: CLIENTS,
    jwks: { keys },
    // The account id is the email.
    async findAccount(ctx, id) {
      return {
        accountId: id,
        async claims() {
          return {
            sub: id,
            email: id,
            email_verified: !id.startsWith('unverified'),
            name: `Test ${id.split('@')[0]}`,
          };
        },
      };
    },
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name'],
    },
    scopes: ['openid', 'email', 'profile'],
    // Like Google: the ID token of the code flow carries the profile claims.
    conformIdTokenClaims: false,
    pkce: { required: () => true },
    features: { devInteractions: { enabled: true } },
    cookies: { keys: ['identity-test-cookie-key'] },
    ttl: {
      AccessToken: 3600,
      AuthorizationCode: 600,
      IdToken: 3600,
      Grant: 3600,
      Interaction: 600,
      Session: 3600,
    },
    renderError(ctx, out) {
      ctx.type = 'json';
      ctx.body = out;
    },
  });
  // Errors are answered to the caller; keep the test output quiet.
  provider.on('server_error', (ctx, err) => console.error('server_error', err));
  return provider;
}

const port = Number(process.argv[2] ?? process.env.OIDC_PORT ?? 0);
let keys = [rsaKey()];
let handler = () => {};

const server = createServer((req, res) => {
  if (req.method === 'POST' && req.url === '/__test/rotate-keys') {
    keys = [rsaKey(), ...keys];
    handler = makeProvider(issuer, keys).callback();
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ kid: keys[0].kid }));
    return;
  }
  handler(req, res);
});

let issuer;
server.listen(port, '127.0.0.1', () => {
  issuer = `http://127.0.0.1:${server.address().port}`;
  handler = makeProvider(issuer, keys).callback();
  console.log(`READY ${issuer}`);
});

// The test harness ends this process; a closed stdin (the harness died) ends it too.
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => process.exit(0));
