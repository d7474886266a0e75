// Plays the browser (and its human) of the authorization code flow
// against provider.mjs, over plain HTTP with a cookie jar: GETs the
// authorization URL, signs in as LOGIN (consent is given by the provider
// automatically), follows the provider's redirects until one leaves the
// provider for the application's redirect URI (e.g. the CLI's loopback
// http://127.0.0.1:PORT/callback?code=…), then GETs that URL so that the
// waiting application receives the code. (A form_post response is POSTed
// there instead.)
//
// Exits 0 once the redirect URI answered (any HTTP status; printed on
// stdout as "delivered STATUS"). Exits 1 with a message on stderr if the
// flow fails before that, if the redirect URI cannot be reached, or if the
// provider redirected there with an error (error=access_denied for an
// unknown LOGIN) — the error is still delivered to the redirect URI first.
//
// The application must be listening on its redirect URI before running
// this, and must answer that request while this program runs (do not
// wait for this program to exit before serving the callback).
//
// AUTHORIZATION_URL may also be a file:// URL of a page that redirects
// to it (<meta http-equiv="refresh" content="0;url=...">), as
// `portcullis login` opens, so that the URL never appears on a command
// line.
//
// Usage: node approve-browser.mjs LOGIN AUTHORIZATION_URL
// e.g. as a BROWSER-style wrapper:  exec node /path/approve-browser.mjs dana "$1"

import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Browser, errorText, fail, forms, summary } from './browser.mjs';

const [login, given] = process.argv.slice(2);
if (!login || !given) fail('usage: node approve-browser.mjs LOGIN AUTHORIZATION_URL');
let authorizationUrl = given;
if (given.startsWith('file://')) {
  const page = readFileSync(fileURLToPath(given), 'utf8');
  const m = page.match(/http-equiv="refresh" content="0;url=([^"]+)"/);
  if (!m) fail(`no redirect in ${given}`);
  authorizationUrl = m[1]
    .replaceAll('&quot;', '"')
    .replaceAll('&lt;', '<')
    .replaceAll('&gt;', '>')
    .replaceAll('&amp;', '&');
}

const browser = new Browser();
const provider = new URL(authorizationUrl).origin;
let next = { target: authorizationUrl };
let loggedIn = false;

async function deliver(target, form) {
  const r = await browser.request(target, { form, cookies: false });
  process.stdout.write(`delivered ${r.status}\n`);
  const params = form ? new URLSearchParams(form) : new URL(target).searchParams;
  if (params.has('error')) {
    fail(`authorization failed: ${params.get('error')}: ${params.get('error_description') ?? ''} (delivered to ${new URL(target).origin})`);
  }
  process.exit(0);
}

try {
  for (let step = 0; step < 30; step += 1) {
    const r = await browser.request(next.target, { form: next.form });
    if (r.location) {
      if (r.location.origin !== provider) await deliver(r.location);
      next = { target: r.location };
      continue;
    }
    const fs = forms(r.text, r.url);
    const loginForm = fs.find((f) => f.id === 'login-form');
    if (loginForm) {
      if (loggedIn) fail(`authorization failed: the provider asks for a login again: ${summary(r.text)}`);
      loggedIn = true;
      next = { target: loginForm.action, form: { ...loginForm.fields, login } };
      continue;
    }
    if (fs.length === 1 && fs[0].method === 'POST' && fs[0].action.origin !== provider) {
      await deliver(fs[0].action, fs[0].fields); // response_mode=form_post
    }
    const error = errorText(r.text);
    if (error) fail(`authorization failed: ${error} (HTTP ${r.status} at ${r.url})`);
    fail(`authorization failed: unexpected page (HTTP ${r.status} at ${r.url}): ${summary(r.text)}`);
  }
  fail('authorization failed: too many steps');
} catch (err) {
  fail(`authorization failed: ${err.message}${err.cause ? ` (${err.cause.message ?? err.cause})` : ''}`);
}
