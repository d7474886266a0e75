// A real OpenID provider for the test bed: the certified `oidc-provider`
// package, on 127.0.0.1 with a port of its own choosing. It prints one
// JSON line, {"issuer": "http://127.0.0.1:PORT"}, once it listens, and
// runs until killed.
//
// Clients (all client-credentials, secret = "<id>-secret"):
//   report-bot     an AI agent
//   nightly-etl    a job
//   short-lived    tokens that expire after 2 seconds
// Access tokens are JWTs for the resource the client asks for (its URI is
// their audience; default "urn:portcullis"), signed with ES256, or with
// RS256 for nightly-etl.
//
// Usage: node provider.mjs

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import Provider from 'oidc-provider';

function jwk(kind, options, kid, alg) {
  const { privateKey } = generateKeyPairSync(kind, options);
  return { ...privateKey.export({ format: 'jwk' }), kid, alg, use: 'sig' };
}

const keys = [
  jwk('ec', { namedCurve: 'P-256' }, 'es256-1', 'ES256'),
  jwk('rsa', { modulusLength: 2048 }, 'rs256-1', 'RS256'),
];

const clients = ['report-bot', 'nightly-etl', 'short-lived'].map((id) => ({
  client_id: id,
  client_secret: `${id}-secret`,
  grant_types: ['client_credentials'],
  redirect_uris: [],
  response_types: [],
}));

const server = await new Promise((resolve) => {
  const s = createServer();
  s.listen(0, '127.0.0.1', () => resolve(s));
});
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  cookies: { keys: [randomBytes(32).toString('hex')] },
  clients,
  jwks: { keys },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => 'urn:portcullis',
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, resource) => ({
        scope: 'db',
        audience: resource,
        accessTokenFormat: 'jwt',
        accessTokenTTL: ctx.oidc.client?.clientId === 'short-lived' ? 2 : 600,
        jwt: { sign: { alg: ctx.oidc.client?.clientId === 'nightly-etl' ? 'RS256' : 'ES256' } },
      }),
    },
  },
  scopes: ['db'],
});
provider.proxy = false;
server.on('request', provider.callback());
process.stdout.write(JSON.stringify({ issuer }) + '\n');
