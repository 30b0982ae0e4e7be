// notify.js: vibesd's notifications (WS /ws/notifications), open on every
// view. Deduplicated by kind + offset, the last 100 kept, an unread count,
// toasts and (when the user enabled them) browser notifications for new
// ones; the kept ones vibesd sends again on connecting (`replayed`) show
// neither.

import { createStore } from './common.js';
import { openSocket } from './api.js';
import { navigate } from './router.js';

const KEEP = 100;
const TOAST_MS = 8000;
const ENABLED_KEY = 'vibesd.notifications';

export const notifications = createStore({ list: [], unread: 0 });
export const toasts = createStore([]);

const seen = new Set();
let viewing = false;
let toastId = 0;

export const keyOf = (n) => `${n.kind}:${n.offset}`;

/** Where a notification leads: its own link (a permission request's page), the assessment for breaker_open, else the session. */
export function linkOf(n) {
  if (typeof n.link === 'string' && n.link.startsWith('/') && !n.link.startsWith('//')) return n.link;
  const id = encodeURIComponent(String(n.session_id || ''));
  return n.kind === 'breaker_open' ? `/assessment/${id}` : `/sessions/${id}`;
}

export const canNotify = () => typeof Notification !== 'undefined';

export function browserEnabled() {
  if (!canNotify()) return false;
  let flag = null;
  try {
    flag = localStorage.getItem(ENABLED_KEY);
  } catch {
    flag = null;
  }
  return flag === 'on' && Notification.permission === 'granted';
}

/** Asks for permission (call from a click only); resolves to the permission state. */
export async function enableBrowser() {
  if (!canNotify()) return 'unsupported';
  let permission = Notification.permission;
  if (permission !== 'granted') {
    try {
      permission = await Notification.requestPermission();
    } catch {
      permission = Notification.permission;
    }
  }
  try {
    if (permission === 'granted') localStorage.setItem(ENABLED_KEY, 'on');
  } catch {
    // Storage unavailable: enabled for this page only.
  }
  return permission;
}

export function disableBrowser() {
  try {
    localStorage.setItem(ENABLED_KEY, 'off');
  } catch {
    // Storage unavailable.
  }
}

/** The notifications view marks everything read while it shows. */
export function setViewing(on) {
  viewing = on;
  if (on && notifications.get().unread) notifications.set((s) => ({ ...s, unread: 0 }));
}

export function dismissToast(id) {
  toasts.set((ts) => ts.filter((t) => t.id !== id));
}

function toast(n) {
  const id = ++toastId;
  toasts.set((ts) => [...ts, { id, n, link: linkOf(n) }].slice(-4));
  setTimeout(() => dismissToast(id), TOAST_MS);
}

function browserNotify(n) {
  if (!browserEnabled()) return;
  try {
    const note = new Notification(n.title || n.kind, { body: n.message || '', tag: keyOf(n) });
    note.onclick = () => {
      window.focus();
      navigate(linkOf(n));
      note.close();
    };
  } catch {
    // Some platforms only notify from a service worker: the toast suffices.
  }
}

function receive(data) {
  let n;
  try {
    n = JSON.parse(data);
  } catch {
    return;
  }
  if (!n || typeof n !== 'object' || n.kind == null || n.offset == null) return;
  const key = keyOf(n);
  if (seen.has(key)) return;
  seen.add(key);
  if (seen.size > 10 * KEEP) seen.delete(seen.values().next().value);
  // vibesd marks what it kept and sends again on connecting.
  const replay = n.replayed === true;
  notifications.set((s) => {
    const list = [n, ...s.list].sort((a, b) => b.offset - a.offset).slice(0, KEEP);
    return { list, unread: viewing ? 0 : Math.min(KEEP, s.unread + 1) };
  });
  if (!replay) {
    toast(n);
    browserNotify(n);
  }
}

let started = false;

export function startNotifications() {
  if (started) return;
  started = true;
  openSocket({
    path: '/ws/notifications',
    onMessage: receive,
  });
}
