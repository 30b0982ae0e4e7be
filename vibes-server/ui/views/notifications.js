// views/notifications.js: the notifications vibesd pushed (newest first),
// each linking to its session (or, for breaker_open, its assessment), and
// the button that enables browser notifications.

import { html, useEffect, useState } from '../vendor/htm-preact-standalone-3.1.1.js';
import { useStore, dateTime } from '../common.js';
import { notifications, setViewing, linkOf, keyOf, canNotify, browserEnabled, enableBrowser, disableBrowser } from '../notify.js';

function permissionNow() {
  return canNotify() ? Notification.permission : 'unsupported';
}

export function NotificationsView() {
  const { list } = useStore(notifications);
  const [permission, setPermission] = useState(permissionNow);
  const [enabled, setEnabled] = useState(browserEnabled);

  useEffect(() => {
    setViewing(true);
    return () => setViewing(false);
  }, []);

  async function toggle() {
    if (enabled) {
      disableBrowser();
      setEnabled(false);
      return;
    }
    const p = await enableBrowser();
    setPermission(p);
    setEnabled(browserEnabled());
  }

  const stateText = permission === 'unsupported'
    ? 'This browser has no notifications.'
    : enabled ? 'Browser notifications are on.'
      : permission === 'denied' ? 'Browser notifications are blocked for this page (change it in the site settings).'
        : permission === 'granted' ? 'Browser notifications are allowed but off.' : 'Browser notifications are off.';
  return html`
    <section class="view">
      <h1>Notifications</h1>
      <div class="buttons">
        <button type="button" data-testid="notifications-enable" disabled=${permission === 'unsupported'}
          onClick=${toggle}>${enabled ? 'Turn off browser notifications' : 'Enable browser notifications'}</button>
        <span data-testid="notifications-permission" data-permission=${permission} class="muted">${stateText}</span>
      </div>
      ${list.length === 0 ? html`<p class="empty">No notifications yet.</p>` : html`
        <ul class="notifications">
          ${list.map((n) => html`
            <li key=${keyOf(n)} class=${`notification kind-${n.kind}`} data-testid="notification" data-kind=${n.kind} data-offset=${n.offset}>
              <div class="meta">
                <span class="kind">${String(n.kind).replace(/_/g, ' ')}</span>
                <time class="muted" datetime=${n.timestamp}>${dateTime(n.timestamp)}</time>
                <span class="muted mono">@${n.offset}</span>
              </div>
              <a href=${linkOf(n)} class="title">${n.title || n.kind}</a>
              ${n.message ? html`<div class="message-text">${n.message}</div>` : null}
              <div class="muted small">session <span class="mono">${n.session_id}</span></div>
            </li>`)}
        </ul>`}
    </section>`;
}
