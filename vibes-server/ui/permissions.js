// permissions.js: the permission requests waiting for a remote decision
// (WS /ws/permissions), open on every view: a snapshot on connecting, then
// each request as it changes. `pending` counts the ones that still take a
// decision, for the nav's badge.

import { createStore, enc } from './common.js';
import { api, openSocket } from './api.js';

export const permissions = createStore({ loaded: false, enabled: null, requests: [], pending: 0 });

function countPending(list) {
  return list.filter((r) => r.state === 'pending').length;
}

function setAll(list) {
  const requests = [...list].sort((a, b) => b.offset - a.offset);
  permissions.set((s) => ({ ...s, loaded: true, requests, pending: countPending(requests) }));
}

// A request only moves on: pending, decided, closed.
const RANK = { pending: 0, decided: 1, closed: 2 };

/** Keeps `request` unless what is known of it has moved further (an API answer can arrive after the socket's later change). */
function upsert(request) {
  const s = permissions.get();
  const known = s.requests.find((r) => r.offset === request.offset);
  if (known && (RANK[known.state] ?? 0) > (RANK[request.state] ?? 0)) return;
  const rest = s.requests.filter((r) => r.offset !== request.offset);
  setAll([request, ...rest]);
}

function receive(data) {
  let m;
  try {
    m = JSON.parse(data);
  } catch {
    return;
  }
  if (!m || typeof m !== 'object') return;
  if (m.type === 'snapshot' && Array.isArray(m.requests)) setAll(m.requests);
  else if (m.type === 'request' && m.request && m.request.offset != null) upsert(m.request);
}

/** Whether remote approval is on (GET /api/permissions says). */
async function loadEnabled() {
  const r = await api('/api/permissions');
  if (r.ok && r.data) permissions.set((s) => ({ ...s, enabled: r.data.enabled === true }));
}

/** Allows or denies the request at `offset`; the API's answer ({ok, status, data, error, detail}). */
export async function decide(offset, behavior, message) {
  const body = { behavior };
  if (behavior === 'deny' && message && message.trim()) body.message = message.trim();
  const r = await api(`/api/permissions/${enc(offset)}/decision`, { body });
  if (r.ok && r.data) upsert(r.data);
  else if (r.status === 409 && r.data && r.data.request) upsert(r.data.request);
  return r;
}

let started = false;

export function startPermissions() {
  if (started) return;
  started = true;
  openSocket({
    path: '/ws/permissions',
    onMessage: receive,
    onOpen: loadEnabled,
  });
}
