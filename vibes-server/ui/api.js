// api.js: talking to vibesd. The bearer token (localStorage `vibesd.token`),
// `api()` (fetch that never throws), the token-dialog state, the connection
// indicator's state, and `openSocket()` (WebSockets that reconnect forever
// with exponential back-off and carry the token as a subprotocol).

import { createStore, pollControl } from './common.js';

const TOKEN_KEY = 'vibesd.token';

function readStorage(key) {
  try {
    return localStorage.getItem(key);
  } catch {
    return null;
  }
}

function writeStorage(key, value) {
  try {
    if (value == null) localStorage.removeItem(key);
    else localStorage.setItem(key, value);
  } catch {
    // Storage unavailable (private mode): the value lasts for this page only.
  }
}

let memoryToken = readStorage(TOKEN_KEY) || '';

export const getToken = () => memoryToken;

export function setToken(token) {
  memoryToken = token || '';
  writeStorage(TOKEN_KEY, memoryToken || null);
}

/** base64url without padding of the UTF-8 bytes of `t`. */
export function b64url(t) {
  return btoa(unescape(encodeURIComponent(t))).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

// ---- the token dialog ----------------------------------------------------

/**
 * `open`: whether the dialog shows; `refused`: whether to say the token was
 * refused (a `wrong_token`, or one just entered that did not pass);
 * `dismissed`: closed with Escape, so further 401s do not reopen it until
 * the user asks (the top bar then shows a "token" button).
 */
export const auth = createStore({ open: false, refused: false, dismissed: false, epoch: 0 });

function promptForToken(code) {
  const a = auth.get();
  if (a.open) {
    if (code === 'wrong_token' && !a.refused) auth.set({ ...a, refused: true });
    return;
  }
  if (a.dismissed) return;
  auth.set({ ...a, open: true, refused: code === 'wrong_token' });
  pollControl.set((p) => ({ ...p, held: true }));
}

export function openTokenDialog() {
  auth.set((a) => ({ ...a, open: true, dismissed: false }));
  pollControl.set((p) => ({ ...p, held: true }));
}

export function dismissTokenDialog() {
  auth.set((a) => ({ ...a, open: false, dismissed: true }));
  pollControl.set((p) => ({ ...p, held: false }));
}

/** Stores `token`, checks it with GET /api/status; true when accepted. */
export async function submitToken(token) {
  setToken(token.trim());
  const res = await api('/api/status', { noPrompt: true });
  if (res.status === 401) {
    auth.set((a) => ({ ...a, open: true, refused: true }));
    return false;
  }
  tokenChanged();
  return true;
}

/** Forgets the stored token; views reload and sockets reconnect. */
export function forgetToken() {
  setToken('');
  tokenVerdict = 'unknown';
  auth.set((a) => ({ ...a, dismissed: false }));
  tokenChanged();
}

function tokenChanged() {
  const epoch = auth.get().epoch + 1;
  auth.set((a) => ({ ...a, open: false, refused: false, dismissed: false, epoch }));
  pollControl.set({ held: false, epoch });
  for (const s of sockets) s.reconnectNow();
}

// What the last answer said of the token in use: 'ok', 'refused' or
// 'unknown'. Sockets wait for 'ok' (or a network error) before opening, so
// that an upgrade is never refused for a missing token.
let tokenVerdict = 'unknown';
let verdictCheck = null;

async function tokenAccepted() {
  if (tokenVerdict === 'ok') return true;
  if (tokenVerdict === 'refused') return false;
  if (!verdictCheck) verdictCheck = api('/api/status').finally(() => { verdictCheck = null; });
  const res = await verdictCheck;
  // Unreachable: try the socket anyway (it says when vibesd is back).
  return res.status !== 401;
}

// ---- connection state ----------------------------------------------------

/**
 * `offline` when a tracked socket is down or the last fetch hit a network
 * error; `connecting` while a tracked socket has yet to open for the first
 * time; else `online`.
 */
export const connection = createStore('connecting');
const sockets = new Set();
let fetchFailed = false;

function updateConnection() {
  let down = fetchFailed;
  let pending = false;
  for (const s of sockets) {
    if (!s.tracked) continue;
    if (s.state === 'closed') down = true;
    if (s.state === 'connecting') pending = true;
  }
  const next = down ? 'offline' : pending ? 'connecting' : 'online';
  if (connection.get() !== next) connection.set(next);
}

// ---- fetch ---------------------------------------------------------------

/**
 * Fetches `path`. Options: `method`, `body` (sent as JSON with
 * Content-Type: application/json), `text` (read the body as text),
 * `noPrompt` (a 401 does not open the token dialog).
 * Resolves to {ok, status, data, error, detail}; never rejects.
 */
export async function api(path, opts = {}) {
  const headers = {};
  const token = getToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  const init = { method: opts.method || (opts.body !== undefined ? 'POST' : 'GET'), headers, cache: 'no-store' };
  if (opts.body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(opts.body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    fetchFailed = true;
    updateConnection();
    return { ok: false, status: 0, error: 'network', detail: String((err && err.message) || err) };
  }
  if (fetchFailed) {
    fetchFailed = false;
    updateConnection();
  }
  if (token === getToken()) tokenVerdict = response.status === 401 ? 'refused' : 'ok';
  let text = '';
  try {
    text = await response.text();
  } catch {
    // The body broke off: treat it as empty.
  }
  let data = null;
  if (!opts.text || !response.ok) {
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = null;
    }
  } else {
    data = text;
  }
  if (response.ok) return { ok: true, status: response.status, data };
  const error = (data && data.error) || `HTTP ${response.status}`;
  const detail = data && data.detail;
  // A 401 for a token that has since been replaced says nothing about the new one.
  if (response.status === 401 && !opts.noPrompt && token === getToken()) promptForToken(error);
  return { ok: false, status: response.status, data, error, detail };
}

// ---- WebSockets ----------------------------------------------------------

export function wsUrl(path) {
  return (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + path;
}

// Closing a socket that is still connecting makes the browser log an
// error, so such a socket is closed once it opens instead.
function discard(sock) {
  sock.onmessage = null;
  sock.onclose = null;
  sock.onerror = null;
  if (sock.readyState === WebSocket.CONNECTING) {
    sock.onopen = () => sock.close(1000);
  } else {
    sock.onopen = null;
    if (sock.readyState === WebSocket.OPEN) sock.close(1000);
  }
}

function makeSocket(path) {
  const token = getToken();
  return token ? new WebSocket(wsUrl(path), ['vibesd', `vibesd.bearer.${b64url(token)}`]) : new WebSocket(wsUrl(path));
}

/**
 * Opens a WebSocket that reconnects forever (back-off from 250 ms doubling
 * to 5 s, with jitter). `path` is a string or an async function giving the
 * path for each attempt. Callbacks: onMessage(data), onOpen(), onClose(event).
 * `probe(path)` runs when an attempt fails before opening (default: GET
 * /api/status, which brings up the token dialog on a 401).
 * `tracked` sockets count for the connection indicator. Returns {close(), reconnectNow()}.
 */
export function openSocket({ path, onMessage, onOpen, onClose, probe, tracked = true }) {
  const entry = { state: 'connecting', tracked, reconnectNow };
  let ws = null;
  let timer = null;
  let attempt = 0;
  let openedAt = 0;
  let closed = false;
  let generation = 0;
  sockets.add(entry);

  async function connect() {
    timer = null;
    if (closed) return;
    // While the token dialog is open an attempt would only be refused.
    if (auth.get().open) {
      timer = setTimeout(connect, 500);
      return;
    }
    const gen = ++generation;
    const allowed = await tokenAccepted();
    if (closed || gen !== generation) return;
    if (!allowed) {
      if (entry.state === 'connecting') {
        entry.state = 'closed';
        updateConnection();
      }
      timer = setTimeout(connect, 1000);
      return;
    }
    let target;
    try {
      target = typeof path === 'function' ? await path() : path;
    } catch (err) {
      console.error(err);
      target = null;
    }
    if (closed || gen !== generation) return;
    if (!target) return retry();
    let sock;
    try {
      sock = makeSocket(target);
    } catch {
      return retry();
    }
    ws = sock;
    sock.onopen = () => {
      if (sock !== ws) return;
      openedAt = Date.now();
      entry.state = 'open';
      fetchFailed = false;
      updateConnection();
      if (onOpen) onOpen();
    };
    sock.onmessage = (ev) => {
      if (sock === ws && onMessage) onMessage(ev.data);
    };
    sock.onerror = () => {};
    sock.onclose = (ev) => {
      if (sock !== ws) return;
      ws = null;
      const everOpened = openedAt > 0 && entry.state === 'open';
      // A socket that stayed up a while starts its back-off afresh.
      if (everOpened && Date.now() - openedAt > 2000) attempt = 0;
      openedAt = 0;
      if (closed) return;
      entry.state = 'closed';
      updateConnection();
      if (onClose) onClose(ev);
      // An upgrade refused before opening may be a 401 (a fetch shows the
      // dialog) or a 400 the caller's probe can read.
      if (!everOpened && !auth.get().open) {
        if (probe) probe(target);
        else api('/api/status');
      }
      retry();
    };
  }

  function retry() {
    if (closed || timer) return;
    const base = Math.min(5000, 250 * 2 ** attempt);
    attempt = Math.min(attempt + 1, 16);
    const delay = base * (0.75 + Math.random() * 0.5);
    timer = setTimeout(connect, Math.min(5000, delay));
  }

  function reconnectNow() {
    if (closed) return;
    attempt = 0;
    if (timer) {
      clearTimeout(timer);
      timer = null;
    }
    const old = ws;
    ws = null;
    if (old) discard(old);
    connect();
  }

  connect();
  return {
    close() {
      closed = true;
      generation += 1;
      if (timer) clearTimeout(timer);
      sockets.delete(entry);
      updateConnection();
      if (ws) {
        const old = ws;
        ws = null;
        discard(old);
      }
    },
    reconnectNow,
  };
}
