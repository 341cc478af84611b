// The console's words: the reader's language, and every text looked up in words.js. A word
// asked for that the language lacks, and a name from the daemon with no word, are kept where
// the browser test reads them (both must stay empty).

import { WORDS } from './words.js';

const LANGS = ['zh-CN', 'en'];

function preferredLang() {
  const chosen = localStorage.getItem('sirend.lang');
  if (LANGS.includes(chosen)) return chosen;
  const asked = navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language || 'en'];
  for (const l of asked) {
    const low = String(l).toLowerCase();
    if (low.startsWith('zh')) return 'zh-CN';
    if (low.startsWith('en')) return 'en';
  }
  return 'en';
}

export let lang = preferredLang();

// Words asked for in a language that lacks them (the browser test reads it: it must stay empty).
const missingWords = new Set();
window.sirendMissingWords = missingWords;

export function t(key, params) {
  let text = WORDS[lang][key];
  if (text === undefined) {
    missingWords.add(`${lang}:${key}`);
    text = WORDS.en[key] ?? key;
  }
  if (params) text = text.replace(/\{(\w+)\}/g, (_, k) => (params[k] === undefined ? '' : String(params[k])));
  return text;
}

// Names the daemon sent that have no word (the browser test reads it: it must stay empty).
const unknownNames = new Set();
window.sirendUnknownNames = unknownNames;

// A word of a family (`state.ok`, `fault.door_open`): the raw name where the daemon sends one
// this console does not know yet, rather than nothing.
export function named(family, name) {
  if (name === null || name === undefined || name === '') return '';
  const key = `${family}.${name}`;
  if (WORDS.en[key] === undefined) {
    unknownNames.add(key);
    return String(name);
  }
  return t(key);
}

// A signal's name: the air-defence signals and patterns in the reader's language; one an
// office configured (`[[live.signals]]`) as the office named it.
export function signalName(name) {
  return WORDS.en[`signal.${name}`] === undefined ? name : t(`signal.${name}`);
}

// Switches the language (the page is then drawn again by its caller).
export function setLang(next) {
  lang = next;
  localStorage.setItem('sirend.lang', next);
  document.documentElement.lang = next;
}
