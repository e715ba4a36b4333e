// The page's words in English and Russian, chosen by the browser's languages.

const STRINGS = {
  en: {
    title: "Pachca sandbox",
    actingAs: "You are",
    intro:
      "This page stands in for Pachca. Whatever you do here is sent to the bridge as a signed webhook, as Pachca would send it.",
    threads: "Threads",
    noThreads:
      "No threads yet: they appear when the bridge opens one for a forum chat and adds you to it.",
    webhooks: "Webhooks sent",
    noWebhooks: "None yet.",
    noWebhookUrl: "None: no webhook URL is set.",
    chooseThread: "Choose a thread.",
    reply: "Reply",
    replyPlaceholder: "Reply in the thread…",
    attach: "Send a file",
    send: "Send",
    save: "Save",
    cancel: "Cancel",
    edit: "Edit",
    delete: "Delete",
    confirmDelete: "Delete this message?",
    edited: "edited",
    viaBot: "via the bot",
    react: "React with {emoji}",
    noMessages: "No replies yet.",
    failed: "That did not work: {reason}",
    offline: "No connection to the sandbox. Trying again…",
    delivered: "{type} {event}: {status}",
    pending: "{type} {event}: sending…",
    notDelivered: "{type} {event}: not delivered ({status})",
    file: "File: {name}",
    image: "Image: {name}",
  },
  ru: {
    title: "Песочница Пачки",
    actingAs: "Вы —",
    intro:
      "Эта страница заменяет Пачку. Всё, что вы здесь делаете, уходит в мост подписанным вебхуком — так, как его отправила бы Пачка.",
    threads: "Треды",
    noThreads:
      "Тредов пока нет: они появятся, когда мост откроет тред для чата форума и добавит вас в него.",
    webhooks: "Отправленные вебхуки",
    noWebhooks: "Пока нет.",
    noWebhookUrl: "Нет: адрес для вебхуков не задан.",
    chooseThread: "Выберите тред.",
    reply: "Ответ",
    replyPlaceholder: "Ответить в треде…",
    attach: "Отправить файл",
    send: "Отправить",
    save: "Сохранить",
    cancel: "Отмена",
    edit: "Изменить",
    delete: "Удалить",
    confirmDelete: "Удалить это сообщение?",
    edited: "изменено",
    viaBot: "через бота",
    react: "Реакция {emoji}",
    noMessages: "Ответов пока нет.",
    failed: "Не получилось: {reason}",
    offline: "Нет связи с песочницей. Пробуем снова…",
    delivered: "{type} {event}: {status}",
    pending: "{type} {event}: отправляется…",
    notDelivered: "{type} {event}: не доставлен ({status})",
    file: "Файл: {name}",
    image: "Изображение: {name}",
  },
};

export function pickLanguage(languages) {
  for (const tag of languages ?? []) {
    const base = String(tag).toLowerCase().split("-")[0];
    if (base in STRINGS) return base;
  }
  return "en";
}

export const lang = pickLanguage(
  globalThis.navigator?.languages?.length
    ? globalThis.navigator.languages
    : [globalThis.navigator?.language],
);
const words = STRINGS[lang];

/** The phrase `key`, with {name} placeholders filled from `params`. */
export function t(key, params = {}) {
  const phrase = words[key] ?? STRINGS.en[key] ?? key;
  return phrase.replace(/\{(\w+)\}/g, (_, name) => (name in params ? String(params[name]) : ""));
}

const timeFormat = new Intl.DateTimeFormat(lang, { hour: "2-digit", minute: "2-digit" });

export function shortTime(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? "" : timeFormat.format(date);
}

/** Fill the page's static words: data-i18n (text) and data-i18n-placeholder. */
export function translatePage(root = document) {
  document.documentElement.lang = lang;
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-placeholder]")) {
    el.placeholder = t(el.dataset.i18nPlaceholder);
  }
}
