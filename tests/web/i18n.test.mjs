// Every phrase the page uses exists in English and Russian, with the same placeholders.

import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import { test } from "node:test";

import { STRINGS, pickLanguage } from "../../web/assets/i18n.js";

const WEB = new URL("../../web/", import.meta.url);

function usedKeys() {
  const keys = new Set();
  for (const name of readdirSync(new URL("assets/", WEB))) {
    if (!name.endsWith(".js")) continue;
    const source = readFileSync(new URL(`assets/${name}`, WEB), "utf8");
    for (const [, key] of source.matchAll(/\bt\("(\w+)"/g)) keys.add(key);
  }
  const page = readFileSync(new URL("index.html", WEB), "utf8");
  for (const [, key] of page.matchAll(/data-i18n(?:-\w+)?="(\w+)"/g)) keys.add(key);
  return keys;
}

const placeholders = (phrase) => [...phrase.matchAll(/\{(\w+)\}/g)].map((m) => m[1]).sort();

test("every phrase the page uses is there in English and Russian", () => {
  const used = usedKeys();
  assert.ok(used.has("reactWith") && used.has("uploadFailed") && used.has("attach"), "keys found");
  for (const key of used) {
    for (const lang of ["en", "ru"]) {
      assert.equal(typeof STRINGS[lang][key], "string", `${lang}.${key}`);
    }
  }
});

test("both languages have the same phrases with the same placeholders", () => {
  assert.deepEqual(Object.keys(STRINGS.ru).sort(), Object.keys(STRINGS.en).sort());
  for (const [key, phrase] of Object.entries(STRINGS.en)) {
    if (typeof phrase !== "string") continue;
    assert.deepEqual(placeholders(STRINGS.ru[key]), placeholders(phrase), key);
  }
});

test("the browser's first language we speak is chosen, else English", () => {
  assert.equal(pickLanguage(["ru-RU", "en"]), "ru");
  assert.equal(pickLanguage(["de-DE", "ru"]), "ru");
  assert.equal(pickLanguage(["de-DE"]), "en");
  assert.equal(pickLanguage([]), "en");
});
