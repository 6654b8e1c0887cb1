// A test OpenID provider for the SDK's login tests: panva/oidc-provider (which we did not
// write), configured like a national citizen IdP.
//
//   PORT=nnnn CLIENT_JWKS='{"keys":[...]}' node server.mjs
//
// * issuer http://127.0.0.1:PORT (loopback only), RS256 ID tokens with a key made at start;
// * client `portal-basic` (client_secret_basic, secret `portal-basic-secret`) and client
//   `portal-jwt` (private_key_jwt, ES256, public keys from CLIENT_JWKS);
// * PKCE required (S256), `claims` parameter enabled, acr values low < substantial < high;
// * refresh tokens for every client allowed the refresh_token grant;
// * no login page: the interaction endpoint logs in the fixed citizen EE38001085718 at the
//   first requested acr value (default `substantial`) and grants what was asked.
// Prints `READY <issuer>` on stdout when listening.

import http from 'node:http';
import crypto from 'node:crypto';
import Provider from 'oidc-provider';

const port = Number(process.env.PORT || process.argv[2]);
if (!port) {
  console.error('usage: PORT=nnnn node server.mjs');
  process.exit(2);
}
const issuer = `http://127.0.0.1:${port}`;
const clientJwks = JSON.parse(process.env.CLIENT_JWKS || '{"keys":[]}');
const CITIZEN = 'EE38001085718';
const REDIRECT = 'http://127.0.0.1/callback';

const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: 'idp-rs256-1', use: 'sig', alg: 'RS256' };

const accounts = {
  [CITIZEN]: { name: 'Mari Maasikas', given_name: 'Mari', family_name: 'Maasikas', birthdate: '1980-01-08' },
};

const configuration = {
  clients: [
    {
      client_id: 'portal-basic',
      client_secret: 'portal-basic-secret',
      token_endpoint_auth_method: 'client_secret_basic',
      redirect_uris: [REDIRECT],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
    },
    {
      client_id: 'portal-jwt',
      token_endpoint_auth_method: 'private_key_jwt',
      token_endpoint_auth_signing_alg: 'ES256',
      jwks: clientJwks,
      redirect_uris: [REDIRECT],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
    },
  ],
  jwks: { keys: [signingKey] },
  cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
  pkce: { required: () => true },
  acrValues: ['low', 'substantial', 'high'],
  claims: {
    openid: ['sub'],
    profile: ['name', 'given_name', 'family_name', 'birthdate'],
  },
  features: {
    devInteractions: { enabled: false },
    claimsParameter: { enabled: true },
  },
  issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  findAccount: async (_ctx, id) => {
    const data = accounts[id];
    if (!data) return undefined;
    return { accountId: id, claims: async () => ({ sub: id, ...data }) };
  },
  ttl: { IdToken: 600, AccessToken: 600, RefreshToken: 3600, Interaction: 600, Session: 3600, Grant: 3600 },
};

const provider = new Provider(issuer, configuration);
const oidc = provider.callback();

async function interaction(req, res) {
  const details = await provider.interactionDetails(req, res);
  const { prompt, params } = details;
  if (prompt.name === 'login') {
    const acr = String(params.acr_values || 'substantial').split(' ')[0];
    await provider.interactionFinished(req, res, { login: { accountId: CITIZEN, acr, amr: ['pwd'] } }, { mergeWithLastSubmission: false });
    return;
  }
  if (prompt.name === 'consent') {
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: details.session.accountId, clientId: params.client_id });
    const missing = prompt.details;
    if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes || {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    const grantId = await grant.save();
    await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
    return;
  }
  res.statusCode = 400;
  res.end(`unexpected prompt ${prompt.name}`);
}

const server = http.createServer((req, res) => {
  if (req.url.startsWith('/interaction/')) {
    interaction(req, res).catch((err) => {
      res.statusCode = 500;
      res.end(String(err && err.stack));
    });
  } else {
    oidc(req, res);
  }
});
server.listen(port, '127.0.0.1', () => console.log(`READY ${issuer}`));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
