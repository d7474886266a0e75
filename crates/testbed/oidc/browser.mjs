// A very small "browser" for the test bed's automation scripts
// (approve-device.mjs, approve-browser.mjs): Node's fetch with redirects
// handled by hand, a cookie jar (host, port and path matched; expiry
// honoured), and a regex-based reader of the HTML forms the provider
// serves. Not a general-purpose HTML parser: it reads the provider's own
// pages only.

const STEP_TIMEOUT_MS = 10_000;

export class Browser {
  #cookies = []; // { origin, name, value, path, expires }

  #cookieHeader(url) {
    const now = Date.now();
    this.#cookies = this.#cookies.filter((c) => c.expires === undefined || c.expires > now);
    return this.#cookies
      .filter((c) => c.origin === url.origin && pathMatches(url.pathname, c.path))
      .sort((a, b) => b.path.length - a.path.length)
      .map((c) => `${c.name}=${c.value}`)
      .join('; ');
  }

  #store(url, setCookies) {
    for (const line of setCookies) {
      const [pair, ...attrs] = line.split(';');
      const eq = pair.indexOf('=');
      if (eq < 1) continue;
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      let path = defaultPath(url.pathname);
      let expires;
      for (const attr of attrs) {
        const [k, ...v] = attr.split('=');
        const key = k.trim().toLowerCase();
        const val = v.join('=').trim();
        if (key === 'path' && val.startsWith('/')) path = val;
        else if (key === 'max-age') expires = Date.now() + Number(val) * 1000;
        else if (key === 'expires' && expires === undefined) expires = Date.parse(val);
      }
      this.#cookies = this.#cookies.filter(
        (c) => !(c.origin === url.origin && c.name === name && c.path === path),
      );
      if (expires === undefined || expires > Date.now()) {
        this.#cookies.push({ origin: url.origin, name, value, path, expires });
      }
    }
  }

  // One request, no redirect following. `form` (an object or
  // URLSearchParams) makes it a form POST. Answers { url, status,
  // location (absolute URL or undefined), text }.
  async request(target, { method, form, cookies = true } = {}) {
    const url = new URL(target);
    const headers = { 'user-agent': 'portcullis-testbed-browser' };
    const cookie = cookies ? this.#cookieHeader(url) : '';
    if (cookie) headers.cookie = cookie;
    let body;
    if (form !== undefined) {
      body = new URLSearchParams(form).toString();
      headers['content-type'] = 'application/x-www-form-urlencoded';
    }
    const response = await fetch(url, {
      method: method ?? (form !== undefined ? 'POST' : 'GET'),
      headers,
      body,
      redirect: 'manual',
      signal: AbortSignal.timeout(STEP_TIMEOUT_MS),
    });
    if (cookies) this.#store(url, response.headers.getSetCookie());
    const text = await response.text();
    const loc = response.headers.get('location');
    return {
      url,
      status: response.status,
      location: loc && response.status >= 300 && response.status < 400 ? new URL(loc, url) : undefined,
      text,
    };
  }
}

function pathMatches(requestPath, cookiePath) {
  if (requestPath === cookiePath) return true;
  if (!requestPath.startsWith(cookiePath)) return false;
  return cookiePath.endsWith('/') || requestPath[cookiePath.length] === '/';
}

function defaultPath(pathname) {
  const i = pathname.lastIndexOf('/');
  return i <= 0 ? '/' : pathname.slice(0, i);
}

export function decodeEntities(s) {
  return s.replace(/&(#x[0-9a-f]+|#[0-9]+|amp|lt|gt|quot|apos);/gi, (_, e) => {
    const l = e.toLowerCase();
    if (l === 'amp') return '&';
    if (l === 'lt') return '<';
    if (l === 'gt') return '>';
    if (l === 'quot') return '"';
    if (l === 'apos') return "'";
    return String.fromCodePoint(l.startsWith('#x') ? parseInt(l.slice(2), 16) : parseInt(l.slice(1), 10));
  });
}

function attributes(s) {
  const out = {};
  for (const m of s.matchAll(/([\w.:-]+)\s*=\s*(?:"([^"]*)"|'([^']*)')/g)) {
    out[m[1].toLowerCase()] = decodeEntities(m[2] ?? m[3]);
  }
  return out;
}

// The forms of a page: [{ id, action (absolute URL), method, fields }],
// fields being the name → value of its <input>s (all types).
export function forms(html, base) {
  const out = [];
  for (const m of html.matchAll(/<form\b([^>]*)>([\s\S]*?)<\/form>/gi)) {
    const attrs = attributes(m[1]);
    const fields = {};
    for (const i of m[2].matchAll(/<input\b([^>]*?)\/?>/gi)) {
      const a = attributes(i[1]);
      if (a.name) fields[a.name] = a.value ?? '';
    }
    out.push({
      id: attrs.id,
      action: new URL(attrs.action ?? '', base),
      method: (attrs.method ?? 'get').toUpperCase(),
      fields,
    });
  }
  return out;
}

// The text of an element with id="error", if the page has one.
export function errorText(html) {
  const m = html.match(/<(\w+)[^>]*\bid="error"[^>]*>([\s\S]*?)<\/\1>/i);
  return m ? decodeEntities(m[2].replace(/<[^>]*>/g, '')).trim() : undefined;
}

// A page's visible text, shortened, for error messages.
export function summary(html) {
  return decodeEntities(
    html.replace(/<(style|script)\b[\s\S]*?<\/\1>/gi, '').replace(/<[^>]*>/g, ' '),
  ).replace(/\s+/g, ' ').trim().slice(0, 400);
}

export function fail(message) {
  process.stderr.write(`${message}\n`);
  process.exit(1);
}
