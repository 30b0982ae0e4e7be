// views/permissions.js: the permission requests Claude Code waits on, with
// Allow and Deny (Deny with an optional message for Claude). Pending ones
// first, then what became of the recent others. `/permissions/<offset>`
// shows one request (where a notification links).

import { html, useEffect, useState } from '../vendor/htm-preact-standalone-3.1.1.js';
import { api } from '../api.js';
import { useStore, dateTime, errorText, pretty, enc } from '../common.js';
import { permissions, decide } from '../permissions.js';

/** Seconds left until `iso`, ticking each second. */
function useSecondsLeft(iso) {
  const until = Date.parse(iso);
  const left = () => Math.max(0, Math.ceil((until - Date.now()) / 1000));
  const [secs, setSecs] = useState(left);
  useEffect(() => {
    const t = setInterval(() => setSecs(left()), 1000);
    return () => clearInterval(t);
  }, [iso]);
  return secs;
}

const MAX_LINES = 400;

function lines(text) {
  const all = String(text == null ? '' : text).split('\n');
  return all.length > MAX_LINES ? [...all.slice(0, MAX_LINES), `… ${all.length - MAX_LINES} more lines`] : all;
}

/** An edit as a diff: the old text's lines removed, the new one's added. */
function Diff({ before, after }) {
  return html`<pre class="diff" data-testid="permission-diff">${lines(before).map((l, i) => html`<span key=${`-${i}`} class="del">- ${l}\n</span>`)}${lines(after).map((l, i) => html`<span key=${`+${i}`} class="add">+ ${l}\n</span>`)}</pre>`;
}

/** The tool's input, readably: a Bash command, a file and its diff, else the JSON. */
function ToolInput({ tool, input }) {
  const i = input && typeof input === 'object' ? input : {};
  if (tool === 'Bash' && typeof i.command === 'string') {
    return html`<div class="tool-input">
      ${i.description ? html`<div class="muted">${i.description}</div>` : null}
      <pre class="command" data-testid="permission-command">$ ${i.command}</pre></div>`;
  }
  if ((tool === 'Edit' || tool === 'MultiEdit') && typeof i.file_path === 'string') {
    const edits = Array.isArray(i.edits) ? i.edits : [{ old_string: i.old_string, new_string: i.new_string }];
    return html`<div class="tool-input">
      <div class="mono" data-testid="permission-file">${i.file_path}</div>
      ${edits.map((e, n) => html`<${Diff} key=${n} before=${e.old_string} after=${e.new_string} />`)}</div>`;
  }
  if (tool === 'Write' && typeof i.file_path === 'string') {
    return html`<div class="tool-input">
      <div class="mono" data-testid="permission-file">${i.file_path} <span class="muted">(new contents)</span></div>
      <pre class="diff" data-testid="permission-diff">${lines(i.content).map((l, n) => html`<span key=${n} class="add">+ ${l}\n</span>`)}</pre></div>`;
  }
  return html`<pre class="json tool-input">${pretty(input)}</pre>`;
}

const OUTCOME_TEXT = {
  decided: 'Claude Code got the decision',
  timed_out: 'no decision in time: the dialog went to the terminal',
  unreachable: 'the hook lost vibesd: the dialog went to the terminal',
};

function Status({ r }) {
  const d = r.decision;
  const who = d ? `${d.behavior === 'allow' ? 'allowed' : 'denied'}${d.decided_by && d.decided_by.client ? ` from ${d.decided_by.client}` : ''}` : '';
  if (r.state === 'decided') return html`<div class="notice" data-testid="permission-status">${who}; waiting for the hook to take it</div>`;
  return html`<div class="muted" data-testid="permission-status">
    ${d ? `${who}. ` : ''}${OUTCOME_TEXT[r.outcome] || r.outcome || 'closed'}
    ${d && d.message ? html`<div>Message: <q>${d.message}</q></div>` : null}</div>`;
}

function Request({ r, focused }) {
  const [message, setMessage] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const secs = useSecondsLeft(r.expires_at);
  const pending = r.state === 'pending';

  async function act(behavior) {
    setBusy(true);
    setError(null);
    const res = await decide(r.offset, behavior, message);
    setBusy(false);
    if (!res.ok) setError(errorText(res));
  }

  return html`
    <li class=${`permission state-${r.state}${focused ? ' focused' : ''}`} data-testid="permission-row" data-offset=${r.offset} data-state=${r.state}>
      <div class="meta">
        <strong class="tool" data-testid="permission-tool">${r.tool}</strong>
        <span class="muted">session <a class="mono" href=${`/sessions/${enc(r.session_id)}`}>${r.session_id}</a></span>
        ${r.cwd ? html`<span class="muted mono">${r.cwd}</span>` : null}
        <time class="muted" datetime=${r.requested_at}>${dateTime(r.requested_at)}</time>
        <a class="muted mono" href=${`/permissions/${r.offset}`}>@${r.offset}</a>
        ${pending ? html`<span class="countdown" data-testid="permission-countdown">${secs} s left</span>` : null}
      </div>
      <${ToolInput} tool=${r.tool} input=${r.tool_input} />
      ${pending ? html`
        <div class="buttons decide">
          <button type="button" class="primary" data-action="allow" disabled=${busy} onClick=${() => act('allow')}>Allow</button>
          <input type="text" data-testid="deny-message" placeholder="Message for Claude (optional)" maxlength="2000"
            aria-label="Message for Claude with a denial" value=${message} onInput=${(e) => setMessage(e.target.value)} />
          <button type="button" class="danger" data-action="deny" disabled=${busy} onClick=${() => act('deny')}>Deny</button>
        </div>` : html`<${Status} r=${r} />`}
      ${error ? html`<div class="error" role="alert" data-testid="permission-error">${error}</div>` : null}
    </li>`;
}

function Off() {
  return html`<div class="notice" data-testid="permissions-off">
    Remote approval is off: Claude Code's permission dialogs are answered at the terminal only. To answer them here,
    set <code>[remote_approval] enabled = true</code> in vibesd's config and add the <code>PermissionRequest</code>
    hook (see docs/hooks.md).</div>`;
}

export function PermissionsView({ offset }) {
  const s = useStore(permissions);
  const [fetched, setFetched] = useState(null);
  const one = offset != null ? s.requests.find((r) => String(r.offset) === String(offset)) : null;

  // A request the socket has not sent (yet): asked for once.
  useEffect(() => {
    if (offset == null || one) return;
    let live = true;
    api(`/api/permissions/${enc(offset)}`).then((r) => live && setFetched(r));
    return () => { live = false; };
  }, [offset, !!one]);

  if (offset != null) {
    const r = one || (fetched && fetched.ok ? fetched.data : null);
    return html`
      <section class="view">
        <h1>Permission request <span class="mono">@${offset}</span></h1>
        ${s.enabled === false ? html`<${Off} />` : null}
        ${r ? html`<ul class="permissions"><${Request} r=${r} focused=${true} /></ul>`
          : fetched && !fetched.ok ? html`<p class="empty" data-testid="permission-missing">${fetched.status === 404
            ? `No permission request at offset ${offset} is kept here: it was never made, vibesd restarted since, or it closed over ten minutes ago.`
            : errorText(fetched)}</p>`
            : html`<p class="muted">Loading…</p>`}
        <p><a href="/permissions">All permission requests</a></p>
      </section>`;
  }

  const pending = s.requests.filter((r) => r.state === 'pending');
  const others = s.requests.filter((r) => r.state !== 'pending');
  return html`
    <section class="view">
      <h1>Permissions</h1>
      ${s.enabled === false ? html`<${Off} />` : null}
      ${!s.loaded ? html`<p class="muted">Loading…</p>` : null}
      ${s.loaded && pending.length === 0 ? html`<p class="empty" data-testid="permissions-empty">No request waits for a decision.</p>` : null}
      ${pending.length > 0 && html`<ul class="permissions" data-testid="permissions-pending">${pending.map((r) => html`<${Request} key=${r.offset} r=${r} />`)}</ul>`}
      ${others.length > 0 && html`
        <h2>Recent</h2>
        <ul class="permissions">${others.map((r) => html`<${Request} key=${r.offset} r=${r} />`)}</ul>`}
    </section>`;
}
