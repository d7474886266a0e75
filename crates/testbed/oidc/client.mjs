// A real OAuth client for the tests: discovers the token endpoint from
// the issuer's discovery document and runs the client-credentials grant,
// printing the access token alone on stdout.
//
// Usage: node client.mjs ISSUER CLIENT_ID CLIENT_SECRET [RESOURCE]

const [issuer, id, secret, resource] = process.argv.slice(2);
const discovery = await (await fetch(`${issuer}/.well-known/openid-configuration`)).json();
const body = new URLSearchParams({ grant_type: 'client_credentials', scope: 'db' });
if (resource) body.set('resource', resource);
const response = await fetch(discovery.token_endpoint, {
  method: 'POST',
  headers: {
    authorization: 'Basic ' + Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64'),
    'content-type': 'application/x-www-form-urlencoded',
  },
  body,
});
const answer = await response.json();
if (!response.ok || !answer.access_token) {
  process.stderr.write(`token request failed: ${response.status} ${JSON.stringify(answer)}\n`);
  process.exit(1);
}
process.stdout.write(answer.access_token + '\n');
