// The page's words in English and Russian, chosen by the browser's languages.

export const STRINGS = {
  en: {
    appTitle: "Forum chats",
    signInTitle: "Sign in",
    signInText:
      "Open the link you were given (it ends in #token=…), or paste your token here.",
    tokenLabel: "Token",
    signIn: "Sign in",
    signOut: "Sign out",
    tokenInvalid: "Your sign-in link has expired or is not valid. Ask for a new one.",
    chats: "Chats",
    noChats: "No chats yet.",
    parentNoChats: "Parents do not take part in forum chats, so there are no chats to show here.",
    readOnly: "read-only",
    chatClosed: "This chat is closed: you can read it, but not write in it.",
    viewerReadOnly: "You are viewing this chat as an administrator: read-only.",
    notParticipantReadOnly: "You can read this chat, but not write in it.",
    unread: "{n} unread",
    chooseChat: "Choose a chat on the left.",
    loading: "Loading…",
    loadingOlder: "Loading earlier messages…",
    beginning: "This is the beginning of the chat.",
    noMessages: "No messages yet.",
    messages: "Messages",
    composerLabel: "Message",
    composerPlaceholder: "Write a message…",
    composerHint: "Enter sends, Shift+Enter starts a new line.",
    send: "Send",
    save: "Save",
    sending: "Sending…",
    sent: "Sent",
    read: "Read",
    readBy: "Read by {names}",
    failedOffline: "Not sent: no connection to the server.",
    failed: "Not sent: {reason}",
    retry: "Retry",
    discard: "Discard",
    edited: "edited",
    editedAt: "Edited {time}",
    edit: "Edit",
    delete: "Delete",
    reply: "Reply",
    cancel: "Cancel",
    confirmDelete: "Delete this message?",
    editing: "Editing your message",
    replyingTo: "Reply to {name}: {text}",
    replyTo: "In reply to {name}: {text}",
    replyUnknown: "In reply to an earlier message",
    typingOne: "{name} is typing…",
    typingMany: "{names} are typing…",
    and: " and ",
    connecting: "Connecting…",
    reconnecting: "No connection. Trying again in {s} s…",
    reconnectNow: "Reconnect now",
    loadFailed: "Could not load: {reason}",
    tryAgain: "Try again",
    actionFailed: "That did not work: {reason}",
    noConnection: "no connection to the server",
    back: "Chats",
    chatRemoved: "This chat was removed.",
    you: "You",
    file: "{name} ({size})",
    image: "Image: {name}",
    imageUnavailable: "The image {name} could not be loaded.",
    reaction: "{emoji} {n}",
    reactionTitle: "{emoji} from {names}",
    reactions: "Reactions",
    react: "React",
    chooseReaction: "Choose a reaction",
    reactWith: "React with {emoji}",
    reactionTakeBack: "Take back your {emoji}",
    reactionAdd: "Click to add yours",
    reactionRemove: "Click to take yours back",
    attach: "Attach files",
    attachedFiles: "Files to send",
    uploading: "Uploading… {p}%",
    uploadingFile: "Uploading {name}",
    uploaded: "Ready",
    uploadFailed: "Not uploaded: {reason}",
    removeFile: "Remove {name}",
    tooManyFiles: "At most {n} files can go in one message.",
    filesWait: "Wait until the files have uploaded, then send.",
    filesFailed: "A file did not upload: try it again or remove it.",
    openFile: "Open {name}",
    participants: "With {names}",
    roles: {
      student: "student",
      teacher: "teacher",
      tutor: "tutor",
      parent: "parent",
      admin: "administrator",
    },
    bytes: ["B", "KB", "MB", "GB"],
  },
  ru: {
    appTitle: "Чаты форума",
    signInTitle: "Вход",
    signInText:
      "Откройте выданную вам ссылку (она заканчивается на #token=…) или вставьте сюда свой токен.",
    tokenLabel: "Токен",
    signIn: "Войти",
    signOut: "Выйти",
    tokenInvalid: "Ссылка для входа устарела или недействительна. Попросите новую.",
    chats: "Чаты",
    noChats: "Чатов пока нет.",
    parentNoChats: "Родители не участвуют в чатах форума, поэтому здесь нет чатов.",
    readOnly: "только чтение",
    chatClosed: "Этот чат закрыт: его можно читать, но писать в него нельзя.",
    viewerReadOnly: "Вы смотрите этот чат как администратор: только чтение.",
    notParticipantReadOnly: "Этот чат можно читать, но писать в него нельзя.",
    unread: "Непрочитанных: {n}",
    chooseChat: "Выберите чат слева.",
    loading: "Загрузка…",
    loadingOlder: "Загружаем более ранние сообщения…",
    beginning: "Это начало чата.",
    noMessages: "Сообщений пока нет.",
    messages: "Сообщения",
    composerLabel: "Сообщение",
    composerPlaceholder: "Напишите сообщение…",
    composerHint: "Enter — отправить, Shift+Enter — новая строка.",
    send: "Отправить",
    save: "Сохранить",
    sending: "Отправляется…",
    sent: "Отправлено",
    read: "Прочитано",
    readBy: "Прочитали: {names}",
    failedOffline: "Не отправлено: нет связи с сервером.",
    failed: "Не отправлено: {reason}",
    retry: "Повторить",
    discard: "Убрать",
    edited: "изменено",
    editedAt: "Изменено {time}",
    edit: "Изменить",
    delete: "Удалить",
    reply: "Ответить",
    cancel: "Отмена",
    confirmDelete: "Удалить это сообщение?",
    editing: "Редактирование сообщения",
    replyingTo: "Ответ на сообщение ({name}): {text}",
    replyTo: "В ответ на сообщение ({name}): {text}",
    replyUnknown: "В ответ на более раннее сообщение",
    typingOne: "{name} печатает…",
    typingMany: "{names} печатают…",
    and: " и ",
    connecting: "Подключение…",
    reconnecting: "Нет связи. Повторная попытка через {s} с…",
    reconnectNow: "Подключиться сейчас",
    loadFailed: "Не удалось загрузить: {reason}",
    tryAgain: "Попробовать снова",
    actionFailed: "Не получилось: {reason}",
    noConnection: "нет связи с сервером",
    back: "Чаты",
    chatRemoved: "Этот чат удалён.",
    you: "Вы",
    file: "{name} ({size})",
    image: "Изображение: {name}",
    imageUnavailable: "Не удалось загрузить изображение {name}.",
    reaction: "{emoji} {n}",
    reactionTitle: "{emoji}: {names}",
    reactions: "Реакции",
    react: "Реакция",
    chooseReaction: "Выберите реакцию",
    reactWith: "Поставить {emoji}",
    reactionTakeBack: "Убрать свою реакцию {emoji}",
    reactionAdd: "Нажмите, чтобы добавить свою",
    reactionRemove: "Нажмите, чтобы убрать свою",
    attach: "Прикрепить файлы",
    attachedFiles: "Файлы к отправке",
    uploading: "Загрузка… {p}%",
    uploadingFile: "Загружается {name}",
    uploaded: "Готово",
    uploadFailed: "Не загружено: {reason}",
    removeFile: "Убрать {name}",
    tooManyFiles: "В одном сообщении может быть не больше {n} файлов.",
    filesWait: "Дождитесь загрузки файлов, затем отправьте.",
    filesFailed: "Файл не загрузился: повторите загрузку или уберите его.",
    openFile: "Открыть {name}",
    participants: "Участники: {names}",
    roles: {
      student: "студент",
      teacher: "преподаватель",
      tutor: "куратор",
      parent: "родитель",
      admin: "администратор",
    },
    bytes: ["Б", "КБ", "МБ", "ГБ"],
  },
};

/** The first of the browser's languages that we speak; English otherwise. */
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

export function roleName(role) {
  return words.roles[role] ?? role;
}

/** "Anna", "Anna and Tom", "Anna, Tom and Lee". */
export function joinNames(names) {
  if (names.length <= 1) return names.join("");
  return `${names.slice(0, -1).join(", ")}${words.and}${names.at(-1)}`;
}

// Built on first use: creating them costs the page's start a few milliseconds.
let formats = null;
function fmt() {
  formats ??= {
    time: new Intl.DateTimeFormat(lang, { hour: "2-digit", minute: "2-digit" }),
    dateTime: new Intl.DateTimeFormat(lang, {
      day: "numeric",
      month: "short",
      hour: "2-digit",
      minute: "2-digit",
    }),
    full: new Intl.DateTimeFormat(lang, { dateStyle: "full", timeStyle: "short" }),
  };
  return formats;
}

/** A message's time: the time alone today, with the date otherwise. */
export function shortTime(iso, now = new Date()) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return "";
  return date.toDateString() === now.toDateString()
    ? fmt().time.format(date)
    : fmt().dateTime.format(date);
}

export function longTime(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? "" : fmt().full.format(date);
}

export function fileSize(bytes) {
  let value = Number(bytes) || 0;
  let unit = 0;
  while (value >= 1024 && unit < words.bytes.length - 1) {
    value /= 1024;
    unit += 1;
  }
  const shown = unit === 0 || value >= 10 ? Math.round(value) : Math.round(value * 10) / 10;
  return `${shown.toLocaleString(lang)} ${words.bytes[unit]}`;
}
