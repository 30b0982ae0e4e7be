// views/status.js: vibesd itself (GET /api/status, polled each second):
// version, backend, high-water mark, uptime, the LogWriter's queue and
// append latency, Iggy; a link to /metrics and the stored token.

import { html, useState } from '../vendor/htm-preact-standalone-3.1.1.js';
import { api, getToken, forgetToken, openTokenDialog, auth } from '../api.js';
import { usePoll, useStore, ErrorBox, duration, usToMs, show } from '../common.js';

function iggyServerText(v) {
  if (v == null) return 'not managed by vibesd';
  const parts = [v.address, v.pid != null ? `pid ${v.pid}` : null, v.up === true ? 'up' : v.up === false ? 'down' : null,
    v.restarts != null ? `${v.restarts} restart${v.restarts === 1 ? '' : 's'}` : null];
  return parts.filter(Boolean).join(', ');
}

function iggyText(v) {
  if (v == null) return 'not in use (embedded store)';
  return `${show(v.address)}${v.managed ? ' (managed by vibesd)' : ' (external)'}`;
}

export function StatusView() {
  const [status, setStatus] = useState(null);
  const [res, setRes] = useState(null);
  useStore(auth);

  usePoll(async () => {
    const r = await api('/api/status');
    setRes(r);
    if (r.ok && r.data) setStatus(r.data);
  }, 1000);

  const s = status || {};
  const w = s.writer && typeof s.writer === 'object' ? s.writer : null;
  const lat = (w && w.append_latency) || {};
  const hasToken = !!getToken();
  return html`
    <section class="view" data-testid="status">
      <h1>Status</h1>
      <${ErrorBox} res=${res} />
      ${!status && !res ? html`<p class="muted">Loading…</p>` : null}
      ${status && html`
        <dl class="status">
          <dt>version</dt><dd data-field="version" class="mono">${show(s.version)}</dd>
          <dt>backend</dt><dd data-field="backend">${show(s.backend)}</dd>
          <dt>why this backend</dt><dd data-field="backend_reason" class="wrap">${show(s.backend_reason)}</dd>
          <dt>high-water mark</dt><dd data-field="high_water_mark" class="mono">${show(s.high_water_mark)}</dd>
          <dt>uptime</dt><dd data-field="uptime" data-seconds=${s.uptime_seconds} class="mono">${duration(s.uptime_seconds)}</dd>
          ${w && html`
            <dt>writer queue</dt>
            <dd class="mono pair"><span data-field="writer.queued_events">${show(w.queued_events)}</span>
              <span class="muted"> / </span><span data-field="writer.max_queued_events">${show(w.max_queued_events)}</span> events</dd>
            <dt>append latency p50</dt><dd data-field="writer.append_latency.p50_us" class="mono">${usToMs(lat.p50_us)}</dd>
            <dt>append latency p99</dt><dd data-field="writer.append_latency.p99_us" class="mono">${usToMs(lat.p99_us)}</dd>
            <dt>writer open</dt><dd data-field="writer.open">${w.open === true ? 'yes' : w.open === false ? 'no' : '—'}</dd>`}
          ${'iggy' in s && html`<dt>iggy</dt><dd data-field="iggy" class="mono">${iggyText(s.iggy)}</dd>`}
          ${'iggy_server' in s && html`<dt>iggy-server</dt><dd data-field="iggy_server" class="mono">${iggyServerText(s.iggy_server)}</dd>`}
        </dl>`}
      <p><a href="/metrics" data-testid="metrics-link" data-native>Prometheus metrics (/metrics)</a>
        ${hasToken ? html` <span class="muted small">(beyond loopback /metrics needs the token: a browser link sends none)</span>` : null}</p>
      <h2>Token</h2>
      <p data-testid="token-state">${hasToken ? 'A bearer token is stored in this browser.' : 'No bearer token is stored in this browser.'}</p>
      <div class="buttons">
        <button type="button" data-testid="token-change" onClick=${openTokenDialog}>${hasToken ? 'Change token…' : 'Enter token…'}</button>
        <button type="button" data-testid="forget-token" disabled=${!hasToken} onClick=${forgetToken}>Forget token</button>
      </div>
    </section>`;
}
