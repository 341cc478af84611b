// Building the page: elements, tables, questions, notices, and numbers and times written
// for the reader. Nothing here knows the daemon.

import { STATE_STYLE, stateIcon } from './map.js';
import { lang, named, t } from './i18n.js';

export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function replace(el, ...children) {
  el.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
}

export function badge(state) {
  const st = STATE_STYLE[state] ? state : 'unknown';
  return h('span', { class: `badge state-${st}` }, stateIcon(st), named('state', st));
}

export function fmtNumber(n, digits = 0) {
  if (n === null || n === undefined || Number.isNaN(n)) return '—';
  return Number(n).toLocaleString(lang, { maximumFractionDigits: digits, minimumFractionDigits: 0 });
}

export function fmtPeople(n) {
  if (n === null || n === undefined) return '—';
  return fmtNumber(Math.round(n));
}

export function fmtKm2(m2) {
  return fmtNumber(m2 / 1e6, m2 < 1e7 ? 2 : 1);
}

// "2026-05-12 14:28:00" in `zone` (the browser's own without one): one unambiguous form in
// both languages.
export function fmtTime(iso, zone) {
  if (!iso) return '—';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  const parts = {};
  const format = new Intl.DateTimeFormat('en-GB', {
    timeZone: zone || undefined,
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit',
    hourCycle: 'h23',
  });
  for (const p of format.formatToParts(d)) parts[p.type] = p.value;
  return `${parts.year}-${parts.month}-${parts.day} ${parts.hour}:${parts.minute}:${parts.second}`;
}

export function ago(iso) {
  if (!iso) return '—';
  const s = Math.max(0, (Date.now() - new Date(iso).getTime()) / 1000);
  if (s < 90) return t('ago.seconds', { n: Math.round(s) });
  if (s < 5400) return t('ago.minutes', { n: Math.round(s / 60) });
  if (s < 172800) return t('ago.hours', { n: Math.round(s / 3600) });
  return t('ago.days', { n: Math.round(s / 86400) });
}

export function toast(message, error) {
  const box = document.getElementById('toasts');
  const el = h('div', { class: `toast ${error ? 'toast-error' : ''}`, role: error ? 'alert' : 'status' }, message);
  box.append(el);
  setTimeout(() => el.remove(), error ? 9000 : 4000);
}

export function section(title, ...children) {
  return h('section', { class: 'panel' }, h('h2', {}, title), ...children);
}

export function table(headers, rows, cls) {
  return h(
    'table',
    { class: cls || '' },
    h('thead', {}, h('tr', {}, headers.map((x) => (Array.isArray(x) ? h('th', { scope: 'col', class: x[1] }, x[0]) : h('th', { scope: 'col' }, x))))),
    h('tbody', {}, rows),
  );
}

export function empty(text) {
  return h('p', { class: 'empty' }, text);
}

export function resultTag(result) {
  if (!result) return h('span', { class: 'result pending' }, t('result.pending'));
  return h('span', { class: `result ${result === 'pass' ? 'pass' : 'fail'}` }, result === 'pass' ? '✓ ' : '✗ ', named('result', result));
}

// A question asked in the page (the browser's own prompt can be neither translated nor made
// to look like what it is): resolves to the text typed (or `true` without a field), or `null`
// when the person goes back. A dangerous question starts on "back", so that Enter is safe.
export function ask({ title, message, field, ok, danger = false }) {
  return new Promise((resolve) => {
    const input = field ? h('textarea', { rows: '2', maxlength: '1000', id: 'ask-input', required: field.required }) : null;
    const dialog = h('dialog', { class: `ask ${danger ? 'ask-danger' : ''}`, 'aria-labelledby': 'ask-title' });
    const back = h('button', { type: 'button', class: 'secondary', onclick: () => dialog.close('back') }, t('action.back'));
    const confirmButton = h('button', { type: 'submit', value: 'ok', class: danger ? 'danger' : '' }, ok);
    dialog.append(
      h(
        'form',
        { method: 'dialog' },
        h('h2', { id: 'ask-title' }, title),
        message ? h('p', {}, message) : null,
        input ? [h('label', { for: 'ask-input' }, field.label), input] : null,
        h('div', { class: 'buttons' }, back, confirmButton),
      ),
    );
    dialog.addEventListener('close', () => {
      const answer = dialog.returnValue;
      dialog.remove();
      resolve(answer === 'ok' ? (input ? input.value.trim() : true) : null);
    });
    document.body.append(dialog);
    dialog.showModal();
    (danger ? back : input || confirmButton).focus();
  });
}

// A form's submit: the button is held while the request is out, and the refusal is shown.
export function submitter(action) {
  return async (ev) => {
    ev.preventDefault();
    const form = ev.target;
    const buttons = form.querySelectorAll('button');
    buttons.forEach((b) => (b.disabled = true));
    try {
      await action(form);
    } catch (e) {
      toast(e.message, true);
      const out = form.querySelector('.form-error') || h('p', { class: 'form-error', role: 'alert' });
      out.textContent = e.message;
      form.append(out);
    } finally {
      buttons.forEach((b) => (b.disabled = false));
    }
  };
}
