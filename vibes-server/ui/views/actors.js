// views/actors.js: the actor tree (GET /api/actors, polled each second) as
// nested lists. A node whose actor_id or restarts changed since the last
// poll is highlighted for a few seconds and noted under "recent changes".

import { html, useState } from '../vendor/htm-preact-standalone-3.1.1.js';
import { api } from '../api.js';
import { usePoll, ErrorBox, Badge, dateTime, show } from '../common.js';

const HIGHLIGHT_MS = 4000;
const MAX_CHANGES = 20;

// Module level, so a restart while another view shows is still noticed.
const previous = new Map(); // path -> {actor_id, restarts}
const changedAt = new Map(); // path -> ms
const changes = []; // newest first: {at, text}

function walk(node, path, fn) {
  if (!node || typeof node !== 'object') return;
  fn(node, path);
  for (const child of node.children || []) walk(child, `${path}/${child.name}`, fn);
}

function noteChanges(root) {
  const now = Date.now();
  const seen = new Set();
  walk(root, root && root.name, (node, path) => {
    seen.add(path);
    const before = previous.get(path);
    const id = node.actor_id == null ? null : String(node.actor_id);
    if (before && (before.actor_id !== id || before.restarts !== node.restarts)) {
      changedAt.set(path, now);
      const what = id == null ? 'stopped' : before.restarts !== node.restarts || before.actor_id != null ? 'restarted' : 'started';
      const ids = `${before.actor_id == null ? '–' : before.actor_id} → ${id == null ? '–' : id}`;
      const restarts = before.restarts !== node.restarts ? ` (restarts ${show(before.restarts)} → ${show(node.restarts)})` : '';
      changes.unshift({ at: now, name: node.name, text: `${node.name} ${what}: ${ids}${restarts}` });
      if (changes.length > MAX_CHANGES) changes.length = MAX_CHANGES;
    }
    previous.set(path, { actor_id: id, restarts: node.restarts });
  });
  for (const path of [...previous.keys()]) if (!seen.has(path)) previous.delete(path);
}

export function ActorsView() {
  const [tree, setTree] = useState(null);
  const [res, setRes] = useState(null);

  usePoll(async () => {
    const r = await api('/api/actors');
    setRes(r);
    if (r.ok && r.data && r.data.supervisor) {
      noteChanges(r.data.supervisor);
      setTree(r.data.supervisor);
    }
  }, 1000);

  const now = Date.now();
  return html`
    <section class="view">
      <h1>Actors</h1>
      <${ErrorBox} res=${res} />
      ${!tree && !res ? html`<p class="muted">Loading…</p>` : null}
      <div class="actors-layout">
        ${tree && html`<ul class="tree" aria-label="actor tree">
          <${Node} node=${tree} path=${tree.name} now=${now} />
        </ul>`}
        <aside class="card changes" data-testid="actor-changes" aria-live="polite">
          <h2>Recent changes</h2>
          ${changes.length === 0
            ? html`<p class="muted">None since this page opened.</p>`
            : html`<ul>${changes.map((c) => html`<li data-testid="actor-change" data-name=${c.name}>
                <span class="mono muted">${new Date(c.at).toLocaleTimeString()}</span> ${c.text}</li>`)}</ul>`}
        </aside>
      </div>
    </section>`;
}

function Node({ node, path, now }) {
  const changed = changedAt.has(path) && now - changedAt.get(path) < HIGHLIGHT_MS;
  const kids = node.children || [];
  return html`
    <li class=${changed ? 'changed' : ''} data-testid="actor-node" data-name=${node.name} data-kind=${node.kind}
      data-state=${show(node.state)} data-actor-id=${node.actor_id == null ? '' : String(node.actor_id)}>
      <div class="actor">
        <div class="actor-head">
          <span class="kind">${node.kind}</span>
          <strong class="name">${node.name}</strong>
          <${Badge} state=${node.state} />
          <span class="mono" data-field="actor_id" title="actor id">${node.actor_id == null ? 'no actor' : node.actor_id}</span>
        </div>
        <dl class="facts">
          <dt>restarts</dt><dd data-field="restarts" class="mono">${show(node.restarts)}</dd>
          ${node.generation !== undefined && html`<dt>generation</dt><dd data-field="generation" class="mono">${show(node.generation)}</dd>`}
          <dt>started</dt><dd data-field="started_at">${node.started_at ? dateTime(node.started_at) : '—'}</dd>
          ${node.pid !== undefined && html`<dt>pid</dt><dd data-field="pid" class="mono">${show(node.pid)}</dd>`}
          ${node.address !== undefined && html`<dt>address</dt><dd data-field="address" class="mono">${show(node.address)}</dd>`}
          ${node.last_error && html`<dt>last error</dt><dd data-field="last_error" class="error-text">${node.last_error}</dd>`}
        </dl>
      </div>
      ${kids.length > 0 && html`<ul>${kids.map((k) => html`<${Node} key=${k.name} node=${k} path=${`${path}/${k.name}`} now=${now} />`)}</ul>`}
    </li>`;
}
