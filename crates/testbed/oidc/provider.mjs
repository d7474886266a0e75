// A real OpenID provider for the test bed: the certified `oidc-provider`
// package, on 127.0.0.1 with a port of its own choosing. It prints one
// JSON line, {"issuer": "http://127.0.0.1:PORT"}, once it listens, and
// runs until killed.
//
// Machine clients (client-credentials only, secret = "<id>-secret"):
//   report-bot     an AI agent
//   nightly-etl    a job
//   short-lived    tokens that expire after 2 seconds
// Access tokens are JWTs for the resource the client asks for (its URI is
// their audience; default "urn:portcullis"), signed with ES256, or with
// RS256 for nightly-etl.
//
// Human logins
// ------------
// Public native client `portcullis-cli` (no secret: send client_id in the
// form body; token_endpoint_auth_method "none"), grant types
//   urn:ietf:params:oauth:grant-type:device_code   (RFC 8628)
//   authorization_code with PKCE, S256 only, PKCE required (RFC 7636)
//   refresh_token
// Redirect URI: registered as "http://127.0.0.1/callback"; being a native
// client, oidc-provider accepts it with ANY port (RFC 8252 §7.3), e.g.
// "http://127.0.0.1:54321/callback". Host must be exactly 127.0.0.1 (not
// localhost, not [::1]) and the path exactly /callback. The same
// redirect_uri (with the port) must be sent again to the token endpoint.
//
// Endpoints (also in /.well-known/openid-configuration):
//   device_authorization_endpoint  ISSUER/device/auth
//   verification_uri               ISSUER/device   (…?user_code=XXXX-XXXX
//                                                   as verification_uri_complete)
//   The device authorization answer has "interval": 1 (seconds; added by
//   this test bed) and "expires_in": 600.
//   authorization_endpoint         ISSUER/auth
//   token_endpoint                 ISSUER/token
//   jwks_uri                       ISSUER/jwks
//
// What a CLI should send (both flows):
//   client_id=portcullis-cli
//   scope="openid email profile groups offline_access db"
//   resource=urn:portcullis  (also the default when resource is left out)
// ("db" is the resource's scope: without it the access token has no
// scope; without "openid" there is no ID token.)
// Device flow: POST those to the device authorization endpoint, then poll
// the token endpoint with grant_type=urn:ietf:params:oauth:grant-type:
// device_code, device_code, client_id (errors authorization_pending,
// access_denied, expired_token as in RFC 8628; oidc-provider never sends
// slow_down). Stop polling once tokens came: polling again with the spent
// device code answers invalid_grant AND revokes the tokens issued for it
// (refresh token included).
// Code flow: GET ISSUER/auth?response_type=code&client_id=portcullis-cli
// &redirect_uri=http://127.0.0.1:PORT/callback&scope=…&resource=
// urn:portcullis&state=…&code_challenge=…&code_challenge_method=S256
// (nonce optional), then POST the token endpoint with grant_type=
// authorization_code, code, redirect_uri, code_verifier, client_id.
// The redirect back carries code, state and iss (RFC 9207), or error
// (e.g. access_denied) and error_description. Without code_challenge the
// request is refused (error=invalid_request at the redirect URI).
// offline_access: oidc-provider (per OpenID Connect Core) ignores it in an
// authorization request without prompt=consent; this test bed adds
// prompt=consent itself to GET /auth requests that ask for offline_access
// (not to prompt=none ones), so a CLI may send prompt=consent or not. The
// device flow needs nothing of the kind.
//
// Tokens (from the device_code, authorization_code and refresh_token
// grants; the answer's "scope" is the access token's, i.e. "db"):
//   access_token   JWT (typ at+jwt), ES256 (kid es256-1), aud
//                  "urn:portcullis", 600 s (expires_in); claims iss, sub
//                  (the login name), client_id "portcullis-cli", scope
//                  "db", iat, exp, jti, plus email, email_verified and
//                  groups of the account (always, whatever the scopes).
//   id_token       JWT, RS256 (kid rs256-1), aud "portcullis-cli" (the
//                  client id), sub, and because conformIdTokenClaims is
//                  off, the claims of the scopes asked for: email +
//                  email_verified (scope email), groups (scope groups),
//                  name + preferred_username (scope profile); nonce if
//                  one was sent.
//   refresh_token  only when offline_access was asked for. Opaque. Public
//                  client, so it is rotated on every use: each refresh
//                  answer carries a new refresh_token and the old one is
//                  spent (reusing it fails with invalid_grant and revokes
//                  the grant). A refresh_token grant (grant_type=
//                  refresh_token, refresh_token, client_id, optionally
//                  resource=urn:portcullis — the granted resource is used
//                  when left out) returns a new JWT access token for
//                  urn:portcullis and a new id_token.
// The access token's audience is urn:portcullis, so it is not accepted by
// the userinfo endpoint; the ID token carries the user's claims.
//
// Accounts (the login step takes a login name, no password):
//   dana     email dana@example.com, email_verified true,  groups ["engineers"]
//   erin     email erin@example.com, email_verified true,  groups ["analysts"]
//   mallory  email mallory@evil.test, email_verified false, groups []
// Any other login name ends the interaction with error access_denied
// ("unknown account"): the device flow's polling then answers
// access_denied, the code flow redirects to the redirect_uri with
// error=access_denied.
//
// Interactions (no browser needed): GET /interaction/:uid shows a login
// form (<form id="login-form"> posting field `login` to
// /interaction/:uid/login); consent is granted automatically (on GET
// /interaction/:uid when the consent prompt is due) for every requested
// scope, claim and resource. approve-device.mjs and approve-browser.mjs
// play the human's part; selfcheck-human.mjs checks all of it end to end.
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

clients.push({
  client_id: 'portcullis-cli',
  client_name: 'Portcullis CLI',
  application_type: 'native',
  token_endpoint_auth_method: 'none',
  grant_types: ['urn:ietf:params:oauth:grant-type:device_code', 'authorization_code', 'refresh_token'],
  response_types: ['code'],
  redirect_uris: ['http://127.0.0.1/callback'],
});

const accounts = {
  dana: { email: 'dana@example.com', email_verified: true, groups: ['engineers'], name: 'Dana' },
  erin: { email: 'erin@example.com', email_verified: true, groups: ['analysts'], name: 'Erin' },
  mallory: { email: 'mallory@evil.test', email_verified: false, groups: [], name: 'Mallory' },
};

function claimsOf(sub) {
  const a = accounts[sub];
  return {
    sub,
    email: a.email,
    email_verified: a.email_verified,
    groups: [...a.groups],
    name: a.name,
    preferred_username: sub,
  };
}

const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function page(title, body) {
  return `<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>${esc(title)}</title></head>
<body>
<h1>${esc(title)}</h1>
${body}
</body></html>
`;
}

const server = await new Promise((resolve) => {
  const s = createServer();
  s.listen(0, '127.0.0.1', () => resolve(s));
});
const issuer = `http://127.0.0.1:${server.address().port}`;

// oidc-provider prints notices on stdout; stdout carries only the issuer
// line, so they go to stderr.
console.log = console.info = (...args) => process.stderr.write(args.join(' ') + '\n');

const provider = new Provider(issuer, {
  cookies: { keys: [randomBytes(32).toString('hex')] },
  clients,
  jwks: { keys },
  findAccount: (ctx, sub) => {
    if (!Object.hasOwn(accounts, sub)) return undefined;
    return { accountId: sub, claims: () => claimsOf(sub) };
  },
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username'],
    groups: ['groups'],
  },
  // Put the claims of the requested scopes into the ID token itself
  // (not only into userinfo).
  conformIdTokenClaims: false,
  extraTokenClaims: (ctx, token) => {
    if (token.kind !== 'AccessToken' || !token.accountId) return undefined;
    if (!Object.hasOwn(accounts, token.accountId)) return undefined;
    const { email, email_verified: emailVerified, groups } = claimsOf(token.accountId);
    return { email, email_verified: emailVerified, groups };
  },
  interactions: {
    url: (ctx, interaction) => `/interaction/${interaction.uid}`,
  },
  renderError: (ctx, out) => {
    ctx.type = 'html';
    ctx.body = page('Error', `<pre id="error">${esc(out.error)}: ${esc(out.error_description ?? '')}</pre>`);
  },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    deviceFlow: {
      enabled: true,
      userCodeInputSource: (ctx, form, out, err) => {
        let msg = '<p>Enter the code displayed on your device</p>';
        if (err) {
          let text = 'There was an error processing your request';
          if (err.userCode || err.name === 'NoCodeError') text = 'The code you entered is incorrect';
          else if (err.name === 'AbortedError') text = 'The sign-in request was interrupted';
          msg = `<p id="error">${esc(text)} (${esc(err.message)})</p>`;
        }
        ctx.type = 'html';
        ctx.body = page('Device sign-in', `${msg}\n${form}\n<button type="submit" form="op.deviceInputForm">Continue</button>`);
      },
      userCodeConfirmSource: (ctx, form, client, deviceInfo, userCode) => {
        ctx.type = 'html';
        ctx.body = page('Confirm device', `<p>${esc(client.clientName || client.clientId)} shows the code <code>${esc(userCode)}</code>.</p>\n${form}\n<button type="submit" form="op.deviceConfirmForm">Continue</button>`);
      },
      successSource: (ctx) => {
        ctx.type = 'html';
        ctx.body = page('Sign-in success', `<p id="device-success">The device is signed in as ${esc(ctx.oidc.session.accountId)}; you can close this page.</p>`);
      },
    },
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
  scopes: ['openid', 'offline_access', 'email', 'profile', 'groups', 'db'],
});
provider.proxy = false;

// offline_access in an authorization request counts only with
// prompt=consent (OpenID Connect Core §11); add it, as many providers
// honour offline_access without it.
provider.use(async (ctx, next) => {
  if (ctx.method === 'GET' && ctx.path === '/auth') {
    const q = new URLSearchParams(ctx.querystring);
    const scopes = (q.get('scope') ?? '').split(' ');
    const prompts = (q.get('prompt') ?? '').split(' ').filter(Boolean);
    if (scopes.includes('offline_access') && !prompts.includes('consent') && !prompts.includes('none')) {
      q.set('prompt', [...prompts, 'consent'].join(' '));
      ctx.querystring = q.toString();
    }
  }
  await next();
});

// Device authorization answers carry no `interval` by default (clients
// then wait 5 s between polls, RFC 8628 §3.2); ask for 1 s to keep tests
// quick. (oidc-provider never answers slow_down.)
provider.use(async (ctx, next) => {
  await next();
  if (ctx.path === '/device/auth' && ctx.status === 200 && ctx.body?.device_code) {
    ctx.body.interval = 1;
  }
});

function send(res, status, html) {
  res.statusCode = status;
  res.setHeader('content-type', 'text/html; charset=utf-8');
  res.setHeader('cache-control', 'no-store');
  res.end(html);
}

async function readBody(req) {
  let body = '';
  for await (const chunk of req) {
    body += chunk;
    if (body.length > 65536) throw new Error('request body too large');
  }
  return body;
}

// The human's part: a login form, and consent given automatically.
async function interaction(req, res) {
  const { pathname } = new URL(req.url, issuer);
  const m = pathname.match(/^\/interaction\/([^/]+)(\/login)?$/);
  if (!m) return send(res, 404, page('Not found', ''));
  try {
    const form = req.method === 'POST' ? new URLSearchParams(await readBody(req)) : undefined;
    const details = await provider.interactionDetails(req, res);
    if (details.uid !== m[1]) throw new Error('this is not the current interaction');
    const { prompt, params } = details;

    if (m[2]) {
      if (req.method !== 'POST') return send(res, 405, page('Method not allowed', ''));
      if (prompt.name !== 'login') throw new Error(`the ${prompt.name} prompt is due, not login`);
      const login = (form.get('login') ?? '').trim();
      if (!Object.hasOwn(accounts, login)) {
        return await provider.interactionFinished(req, res, {
          error: 'access_denied',
          error_description: `unknown account ${JSON.stringify(login)}`,
        }, { mergeWithLastSubmission: false });
      }
      return await provider.interactionFinished(req, res, { login: { accountId: login } }, { mergeWithLastSubmission: false });
    }

    if (req.method !== 'GET') return send(res, 405, page('Method not allowed', ''));
    if (prompt.name === 'login') {
      return send(res, 200, page('Sign in', `<p>Client ${esc(params.client_id)} asks for: ${esc(params.scope ?? '')}</p>
<form id="login-form" method="post" action="/interaction/${esc(details.uid)}/login">
<label>Login name <input type="text" name="login" autofocus></label>
<button type="submit">Sign in</button>
</form>
<p>Accounts: ${Object.keys(accounts).join(', ')}</p>`));
    }
    if (prompt.name === 'consent') {
      const grant = details.grantId
        ? await provider.Grant.find(details.grantId)
        : new provider.Grant({ accountId: details.session.accountId, clientId: params.client_id });
      const { missingOIDCScope, missingOIDCClaims, missingResourceScopes } = prompt.details;
      if (missingOIDCScope) grant.addOIDCScope(missingOIDCScope.join(' '));
      if (missingOIDCClaims) grant.addOIDCClaims(missingOIDCClaims);
      for (const [indicator, scopes] of Object.entries(missingResourceScopes ?? {})) {
        grant.addResourceScope(indicator, scopes.join(' '));
      }
      const grantId = await grant.save();
      const consent = details.grantId ? {} : { grantId };
      return await provider.interactionFinished(req, res, { consent }, { mergeWithLastSubmission: true });
    }
    throw new Error(`unknown prompt ${prompt.name}`);
  } catch (err) {
    return send(res, 400, page('Error', `<pre id="error">${esc(err.message)}</pre>`));
  }
}

const callback = provider.callback();
server.on('request', (req, res) => {
  if (req.url.startsWith('/interaction/')) interaction(req, res);
  else callback(req, res);
});
process.stdout.write(JSON.stringify({ issuer }) + '\n');
