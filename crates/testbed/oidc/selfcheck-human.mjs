// End-to-end self-check of the test bed's human logins, without Rust:
// starts provider.mjs, then
//   - the existing client-credentials client (client.mjs report-bot);
//   - device flows (RFC 8628) approved by approve-device.mjs, by user code
//     and by verification_uri_complete, with and without offline_access,
//     and one denied (unknown login);
//   - authorization code flows with PKCE on a 127.0.0.1 loopback redirect
//     of a random port (RFC 8252), played by approve-browser.mjs, incl.
//     a denied one, a wrong code_verifier and a missing code_challenge;
//   - refresh_token grants for resource urn:portcullis, and rotation;
// checking the tokens' signatures (against the JWKS), audiences and
// claims. Prints one line per check; exits 0 if all pass, 1 otherwise.
//
// Usage: node selfcheck-human.mjs

import { spawn, execFile } from 'node:child_process';
import { createHash, createPublicKey, randomBytes, verify } from 'node:crypto';
import { createServer } from 'node:http';
import { dirname } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const CLIENT = 'portcullis-cli';
const RESOURCE = 'urn:portcullis';
const SCOPE = 'openid email profile groups offline_access db';
let checks = 0;

class CheckFailed extends Error {}

function check(ok, what, detail) {
  if (!ok) throw new CheckFailed(`${what}${detail === undefined ? '' : `: ${typeof detail === 'string' ? detail : JSON.stringify(detail)}`}`);
  checks += 1;
}

function eq(actual, expected, what) {
  check(JSON.stringify(actual) === JSON.stringify(expected), what, `got ${JSON.stringify(actual)}, want ${JSON.stringify(expected)}`);
}

function ok(msg) {
  process.stdout.write(`ok - ${msg}\n`);
}

function run(args, { allowFail = false } = {}) {
  return new Promise((resolve, reject) => {
    execFile('node', args, { cwd: here, timeout: 60_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      if (code !== 0 && !allowFail) {
        reject(new CheckFailed(`node ${args.join(' ')} exited ${code}: ${stderr.trim()}`));
      } else {
        resolve({ code, stdout: stdout.trim(), stderr: stderr.trim() });
      }
    });
  });
}

function startProvider() {
  const child = spawn('node', ['provider.mjs'], { cwd: here, stdio: ['ignore', 'pipe', 'ignore'] });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('provider did not start within 20 s')), 20_000);
    child.on('exit', (code) => reject(new Error(`provider exited ${code}`)));
    createInterface({ input: child.stdout }).once('line', (line) => {
      clearTimeout(timer);
      resolve({ child, issuer: JSON.parse(line).issuer });
    });
  });
}

async function post(url, form) {
  const r = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(form),
  });
  return { status: r.status, body: await r.json() };
}

let jwks;
function jwt(token, what) {
  const parts = String(token).split('.');
  check(parts.length === 3, `${what} is a JWT`);
  const [h, p, s] = parts;
  const header = JSON.parse(Buffer.from(h, 'base64url'));
  const payload = JSON.parse(Buffer.from(p, 'base64url'));
  const jwk = jwks.keys.find((k) => k.kid === header.kid);
  check(jwk, `${what}: its kid ${header.kid} is in the JWKS`);
  const key = createPublicKey({ key: jwk, format: 'jwk' });
  const valid = verify('sha256', Buffer.from(`${h}.${p}`), header.alg === 'ES256' ? { key, dsaEncoding: 'ieee-p1363' } : key, Buffer.from(s, 'base64url'));
  check(valid, `${what}: signature verifies`);
  return { header, payload };
}

const ACCOUNTS = {
  dana: { email: 'dana@example.com', email_verified: true, groups: ['engineers'] },
  erin: { email: 'erin@example.com', email_verified: true, groups: ['analysts'] },
  mallory: { email: 'mallory@evil.test', email_verified: false, groups: [] },
};

function checkAccessToken(token, issuer, login, what) {
  const { header, payload } = jwt(token, what);
  eq(header.alg, 'ES256', `${what} alg`);
  eq(header.typ, 'at+jwt', `${what} typ`);
  eq(payload.aud, RESOURCE, `${what} aud`);
  eq(payload.iss, issuer, `${what} iss`);
  eq(payload.sub, login, `${what} sub`);
  eq(payload.client_id, CLIENT, `${what} client_id`);
  eq(payload.scope, 'db', `${what} scope`);
  eq(payload.exp - payload.iat, 600, `${what} lifetime`);
  for (const [k, v] of Object.entries(ACCOUNTS[login])) eq(payload[k], v, `${what} ${k}`);
  return payload;
}

function checkIdToken(token, issuer, login, what, nonce) {
  const { header, payload } = jwt(token, what);
  eq(header.alg, 'RS256', `${what} alg`);
  eq(payload.aud, CLIENT, `${what} aud`);
  eq(payload.iss, issuer, `${what} iss`);
  eq(payload.sub, login, `${what} sub`);
  for (const [k, v] of Object.entries(ACCOUNTS[login])) eq(payload[k], v, `${what} ${k}`);
  if (nonce !== undefined) eq(payload.nonce, nonce, `${what} nonce`);
  return payload;
}

async function deviceAuthorization(discovery, scope, { resource = true } = {}) {
  const form = { client_id: CLIENT, scope };
  if (resource) form.resource = RESOURCE;
  const r = await post(discovery.device_authorization_endpoint, form);
  eq(r.status, 200, 'device authorization status');
  check(r.body.device_code && r.body.user_code, 'device authorization answer', r.body);
  eq(r.body.verification_uri, `${discovery.issuer}/device`, 'verification_uri');
  eq(r.body.interval, 1, 'interval');
  return r.body;
}

function pollDevice(discovery, deviceCode) {
  return post(discovery.token_endpoint, {
    client_id: CLIENT,
    grant_type: 'urn:ietf:params:oauth:grant-type:device_code',
    device_code: deviceCode,
  });
}

async function refresh(discovery, issuer, login, refreshToken, what) {
  const r = await post(discovery.token_endpoint, {
    client_id: CLIENT, grant_type: 'refresh_token', refresh_token: refreshToken, resource: RESOURCE,
  });
  eq(r.status, 200, `${what} status`);
  checkAccessToken(r.body.access_token, issuer, login, `${what} access token`);
  checkIdToken(r.body.id_token, issuer, login, `${what} ID token`);
  check(r.body.refresh_token && r.body.refresh_token !== refreshToken, `${what} rotates the refresh token`);
  return r.body;
}

// Reusing a spent (rotated) refresh token is refused and revokes the
// whole grant: the current refresh token dies too.
async function reuse(discovery, spent, current, what) {
  const form = (rt) => ({ client_id: CLIENT, grant_type: 'refresh_token', refresh_token: rt, resource: RESOURCE });
  const r = await post(discovery.token_endpoint, form(spent));
  eq(r.body.error, 'invalid_grant', `${what}: the spent refresh token is refused`);
  const c = await post(discovery.token_endpoint, form(current));
  eq(c.body.error, 'invalid_grant', `${what}: after that the current refresh token is revoked too`);
}

// A loopback "CLI": an HTTP server on 127.0.0.1, random port, /callback.
async function loopback() {
  let resolveHit;
  const hit = new Promise((r) => { resolveHit = r; });
  const server = createServer((req, res) => {
    const url = new URL(req.url, 'http://127.0.0.1');
    res.writeHead(url.pathname === '/callback' ? 200 : 404, { 'content-type': 'text/plain' });
    res.end('You can close this window.\n');
    if (url.pathname === '/callback') resolveHit(url.searchParams);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return { redirectUri: `http://127.0.0.1:${server.address().port}/callback`, hit, close: () => server.close() };
}

async function codeFlow(discovery, login, {
  pkce = true, verifier: badVerifier, scope = SCOPE, extra = {},
} = {}) {
  const lb = await loopback();
  try {
    const verifier = randomBytes(32).toString('base64url');
    const state = randomBytes(16).toString('base64url');
    const nonce = randomBytes(16).toString('base64url');
    const auth = new URL(discovery.authorization_endpoint);
    const q = {
      response_type: 'code', client_id: CLIENT, redirect_uri: lb.redirectUri, scope, resource: RESOURCE, state, nonce,
    };
    Object.assign(q, extra);
    if (pkce) {
      q.code_challenge = createHash('sha256').update(verifier).digest('base64url');
      q.code_challenge_method = 'S256';
    }
    for (const [k, v] of Object.entries(q)) if (v !== undefined) auth.searchParams.set(k, v);
    const browser = await run(['approve-browser.mjs', login, auth.href], { allowFail: true });
    const params = await Promise.race([lb.hit, new Promise((r) => { setTimeout(() => r(undefined), 5000); })]);
    check(params, `${login}: the loopback redirect URI ${lb.redirectUri} was called`, browser.stderr);
    eq(params.get('state'), state, 'state');
    eq(params.get('iss'), discovery.issuer, 'iss parameter (RFC 9207)');
    if (params.has('error')) return { browser, error: params.get('error'), params };
    eq(browser.code, 0, `approve-browser.mjs exit status (${browser.stderr})`);
    const r = await post(discovery.token_endpoint, {
      client_id: CLIENT,
      grant_type: 'authorization_code',
      code: params.get('code'),
      redirect_uri: lb.redirectUri,
      code_verifier: badVerifier ?? verifier,
    });
    return { browser, token: r, nonce };
  } finally {
    lb.close();
  }
}

const { child, issuer } = await startProvider();
let failed = false;
try {
  const discovery = await (await fetch(`${issuer}/.well-known/openid-configuration`)).json();
  jwks = await (await fetch(discovery.jwks_uri)).json();
  eq(discovery.device_authorization_endpoint, `${issuer}/device/auth`, 'device_authorization_endpoint');
  eq(discovery.authorization_endpoint, `${issuer}/auth`, 'authorization_endpoint');
  eq(discovery.token_endpoint, `${issuer}/token`, 'token_endpoint');
  ok(`provider at ${issuer}; discovery lists the device, authorization and token endpoints`);

  // The machine clients, as before.
  for (const [id, alg, ttl] of [['report-bot', 'ES256', 600], ['nightly-etl', 'RS256', 600], ['short-lived', 'ES256', 2]]) {
    const { stdout } = await run(['client.mjs', issuer, id, `${id}-secret`]);
    const { header, payload } = jwt(stdout, `${id} token`);
    eq([header.alg, payload.aud, payload.sub, payload.exp - payload.iat], [alg, RESOURCE, id, ttl], `${id} token`);
  }
  ok('client.mjs: report-bot, nightly-etl, short-lived get their JWTs as before');

  // Device flow, dana, by user code, with offline_access.
  {
    const da = await deviceAuthorization(discovery, SCOPE);
    const pending = await pollDevice(discovery, da.device_code);
    eq(pending.body.error, 'authorization_pending', 'polling before approval');
    const { stdout } = await run(['approve-device.mjs', issuer, da.user_code, 'dana']);
    eq(stdout, 'approved', 'approve-device.mjs output');
    const t = await pollDevice(discovery, da.device_code);
    eq(t.status, 200, `device token status ${JSON.stringify(t.body)}`);
    eq([t.body.token_type, t.body.expires_in, t.body.scope], ['Bearer', 600, 'db'], 'device token answer');
    checkAccessToken(t.body.access_token, issuer, 'dana', 'device access token');
    checkIdToken(t.body.id_token, issuer, 'dana', 'device ID token');
    check(t.body.refresh_token, 'device flow with offline_access gives a refresh token');
    ok('device flow (dana, user code): access token aud urn:portcullis with email/groups, ID token aud portcullis-cli, refresh token');
    const r1 = await refresh(discovery, issuer, 'dana', t.body.refresh_token, 'refresh');
    const r2 = await refresh(discovery, issuer, 'dana', r1.refresh_token, 'second refresh');
    const noResource = await post(discovery.token_endpoint, { client_id: CLIENT, grant_type: 'refresh_token', refresh_token: r2.refresh_token });
    eq(noResource.status, 200, 'refresh without resource');
    checkAccessToken(noResource.body.access_token, issuer, 'dana', 'refresh without resource: access token');
    await reuse(discovery, r1.refresh_token, noResource.body.refresh_token, 'refresh token reuse');
    ok('refresh_token grant (with resource=urn:portcullis, and without): new JWT access token and ID token each time; rotated; reusing a spent one revokes the grant');
  }

  // Device flow, erin, by verification_uri_complete, no offline_access.
  {
    const da = await deviceAuthorization(discovery, 'openid email groups db', { resource: false });
    const { stdout } = await run(['approve-device.mjs', issuer, '-', 'erin', da.verification_uri_complete]);
    eq(stdout, 'approved', 'approve-device.mjs output (verification_uri_complete)');
    const t = await pollDevice(discovery, da.device_code);
    eq(t.status, 200, `device token status ${JSON.stringify(t.body)}`);
    checkAccessToken(t.body.access_token, issuer, 'erin', 'device access token (erin)');
    checkIdToken(t.body.id_token, issuer, 'erin', 'device ID token (erin)');
    check(!t.body.refresh_token, 'no refresh token without offline_access');
    // NB: polling with a spent device code also revokes the tokens issued
    // for it (oidc-provider's code-reuse rule): stop polling on success.
    const again = await pollDevice(discovery, da.device_code);
    eq(again.body.error, 'invalid_grant', 'a spent device code is refused');
    ok('device flow (erin, verification_uri_complete, no resource parameter, no offline_access): tokens for urn:portcullis, no refresh token; spent device code refused');
  }

  // Device flow, unknown login: denied.
  {
    const da = await deviceAuthorization(discovery, SCOPE);
    const r = await run(['approve-device.mjs', issuer, da.user_code, 'nobody'], { allowFail: true });
    check(r.code !== 0 && r.stderr, 'approve-device.mjs fails for an unknown login', r);
    const t = await pollDevice(discovery, da.device_code);
    eq(t.body.error, 'access_denied', 'polling after an unknown login');
    const bad = await run(['approve-device.mjs', issuer, 'BCDF-GHJK', 'dana'], { allowFail: true });
    check(bad.code !== 0 && /incorrect/.test(bad.stderr), 'approve-device.mjs fails for a wrong user code', bad);
    ok(`device flow (unknown login): access_denied; wrong user code refused ("${bad.stderr}")`);
  }

  // Code flow with PKCE, dana, offline_access without prompt=consent.
  {
    const { token: t, nonce, browser } = await codeFlow(discovery, 'dana');
    eq(browser.stdout, 'delivered 200', 'approve-browser.mjs output');
    eq(t.status, 200, `code token status ${JSON.stringify(t.body)}`);
    checkAccessToken(t.body.access_token, issuer, 'dana', 'code access token');
    checkIdToken(t.body.id_token, issuer, 'dana', 'code ID token', nonce);
    check(t.body.refresh_token, 'code flow with offline_access gives a refresh token');
    await refresh(discovery, issuer, 'dana', t.body.refresh_token, 'code-flow refresh');
    ok('code flow + PKCE (dana, loopback on a random port): tokens, refresh token, refresh works');
  }

  // Code flow, erin, prompt=consent sent explicitly, no resource parameter.
  {
    const { token: t, nonce } = await codeFlow(discovery, 'erin', { extra: { prompt: 'consent', resource: undefined } });
    eq(t.status, 200, `code token status ${JSON.stringify(t.body)}`);
    checkAccessToken(t.body.access_token, issuer, 'erin', 'code access token (erin)');
    checkIdToken(t.body.id_token, issuer, 'erin', 'code ID token (erin)', nonce);
    check(t.body.refresh_token, 'code flow with offline_access and prompt=consent gives a refresh token');
    ok('code flow (erin, explicit prompt=consent, no resource parameter): tokens for urn:portcullis, refresh token');
  }

  // Code flow, mallory, no offline_access.
  {
    const { token: t, nonce } = await codeFlow(discovery, 'mallory', { scope: 'openid email groups db' });
    eq(t.status, 200, `code token status ${JSON.stringify(t.body)}`);
    const at = checkAccessToken(t.body.access_token, issuer, 'mallory', 'code access token (mallory)');
    checkIdToken(t.body.id_token, issuer, 'mallory', 'code ID token (mallory)', nonce);
    check(!t.body.refresh_token, 'no refresh token without offline_access (code flow)');
    ok(`code flow (mallory): email_verified ${at.email_verified}, groups ${JSON.stringify(at.groups)}, no refresh token`);
  }

  // Code flow failures.
  {
    const denied = await codeFlow(discovery, 'nobody');
    eq(denied.error, 'access_denied', 'unknown login in the code flow');
    check(denied.browser.code !== 0, 'approve-browser.mjs exits non-zero after delivering an error');
    const wrong = await codeFlow(discovery, 'dana', { verifier: randomBytes(32).toString('base64url') });
    eq(wrong.token.body.error, 'invalid_grant', 'a wrong code_verifier is refused');
    const nopkce = await codeFlow(discovery, 'dana', { pkce: false });
    eq(nopkce.error, 'invalid_request', 'an authorization request without code_challenge is refused');
    ok(`code flow: unknown login -> access_denied at the loopback; wrong code_verifier -> invalid_grant; no PKCE -> ${nopkce.error} (${nopkce.params.get('error_description')})`);
  }
} catch (err) {
  failed = true;
  process.stdout.write(`FAIL - ${err instanceof CheckFailed ? err.message : err.stack}\n`);
} finally {
  child.kill();
}
process.stdout.write(failed ? `selfcheck-human: FAILED after ${checks} checks\n` : `selfcheck-human: all ${checks} checks passed\n`);
process.exit(failed ? 1 : 0);
