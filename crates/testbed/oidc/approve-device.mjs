// Plays the human of the device flow (RFC 8628) against provider.mjs,
// over plain HTTP with a cookie jar (no browser): opens the provider's
// device verification page, enters the user code (with the form's xsrf
// token), confirms the device, signs in as LOGIN; consent is given by the
// provider automatically. Prints "approved" and exits 0 once the provider
// shows its success page; exits 1 with a message on stderr otherwise
// (unknown user code, expired or already used code, unknown login — in
// that last case the device code is denied too and the polling client
// gets access_denied).
//
// Usage: node approve-device.mjs ISSUER USER_CODE LOGIN
//        node approve-device.mjs ISSUER - LOGIN VERIFICATION_URI_COMPLETE

import { Browser, errorText, fail, forms, summary } from './browser.mjs';

const [issuer, userCode, login, complete] = process.argv.slice(2);
if (!issuer || !userCode || !login || (userCode === '-' && !complete)) {
  fail('usage: node approve-device.mjs ISSUER USER_CODE LOGIN\n'
    + '       node approve-device.mjs ISSUER - LOGIN VERIFICATION_URI_COMPLETE');
}

const browser = new Browser();
let next = { target: userCode === '-' ? complete : `${issuer.replace(/\/$/, '')}/device` };
let codeEntered = false;
let loggedIn = false;

try {
  for (let step = 0; step < 30; step += 1) {
    const r = await browser.request(next.target, { form: next.form });
    if (r.location) {
      next = { target: r.location };
      continue;
    }
    if (r.text.includes('id="device-success"')) {
      process.stdout.write('approved\n');
      process.exit(0);
    }
    const error = errorText(r.text);
    if (error) {
      fail(`device not approved: ${error}${loggedIn ? ` after signing in as ${JSON.stringify(login)}` : ''} (HTTP ${r.status} at ${r.url})`);
    }
    const fs = forms(r.text, r.url);
    const input = fs.find((f) => f.id === 'op.deviceInputForm');
    const confirm = fs.find((f) => f.id === 'op.deviceConfirmForm');
    const loginForm = fs.find((f) => f.id === 'login-form');
    if (input) {
      if (codeEntered) fail(`device not approved: the provider asks for the user code again: ${summary(r.text)}`);
      codeEntered = true;
      next = { target: input.action, form: { ...input.fields, user_code: userCode } };
    } else if (confirm) {
      codeEntered = true;
      next = { target: confirm.action, form: confirm.fields };
    } else if (loginForm) {
      if (loggedIn) fail(`device not approved: the provider asks for a login again: ${summary(r.text)}`);
      loggedIn = true;
      next = { target: loginForm.action, form: { ...loginForm.fields, login } };
    } else if (fs.length === 1 && fs[0].method === 'POST') {
      // An auto-submitting form_post page (verification_uri_complete).
      codeEntered = true;
      next = { target: fs[0].action, form: fs[0].fields };
    } else {
      fail(`device not approved: unexpected page (HTTP ${r.status} at ${r.url}): ${summary(r.text)}`);
    }
  }
  fail('device not approved: too many steps');
} catch (err) {
  fail(`device not approved: ${err.message}${err.cause ? ` (${err.cause.message ?? err.cause})` : ''}`);
}
