/* The studio: the person's current video project as a timeline they can touch, inside Telegram.
 * Everything goes through the bot's JSON API on this origin (POST /studio/api/<name>, signed with
 * Telegram's initData); an edit is sent to the chat, where the bot answers, and the page refreshes. */
"use strict";
(() => {
  const TEXTS = {
    en: {
      title: "Studio",
      loading: "Loading…",
      open_from_bot: "Open the studio from the bot in Telegram.",
      unverified: "This studio session could not be verified. Close it and open it again from the bot.",
      forbidden: "You can't use this bot here.",
      offline: "Couldn't reach the studio. Check your connection.",
      server: "The studio had a problem (HTTP {status}). Try again in a moment.",
      retry: "Try again",
      project: "Project",
      rendering: "rendering…",
      timeline: "Timeline",
      empty: "The timeline is empty: send photos or clips to the bot, or describe your video.",
      seconds: "{n}s",
      actions: "Quick actions",
      ratio_9_16: "📱 9:16",
      ratio_16_9: "🖥 16:9",
      ratio_1_1: "⬛ 1:1",
      music: "🎵 Add music",
      title_action: "🔤 Add a title",
      shorter: "➖ Shorter",
      longer: "➕ Longer",
      export: "🎬 Export",
      remove: "Remove",
      earlier: "Move earlier",
      later: "Move later",
      shorten: "Make shorter",
      cancel: "Cancel",
      sent: "Sent to the chat: watch the bot's reply there.",
      media: "Media",
      no_media: "No media yet.",
      image: "Image",
      video: "Video",
      audio: "Audio",
      credits: "💳 {n} credits",
      credits_unknown: "💳 Credits unknown",
      trial: "Free trial",
      personal: "Your NemoVideo account",
      operator: "The bot's shared account",
      last_video: "Last video",
      no_video: "No video yet: tap Export.",
      open_browser: "🌐 Open in browser",
    },
    zh: {
      title: "工作室",
      loading: "加载中…",
      open_from_bot: "请在 Telegram 中从机器人打开工作室。",
      unverified: "无法验证此工作室会话。请关闭后从机器人重新打开。",
      forbidden: "你无法在这里使用此机器人。",
      offline: "无法连接工作室。请检查网络。",
      server: "工作室出了点问题（HTTP {status}）。请稍后再试。",
      retry: "重试",
      project: "项目",
      rendering: "渲染中…",
      timeline: "时间线",
      empty: "时间线是空的：请向机器人发送照片或视频片段，或描述你想要的视频。",
      seconds: "{n}秒",
      actions: "快捷操作",
      ratio_9_16: "📱 9:16",
      ratio_16_9: "🖥 16:9",
      ratio_1_1: "⬛ 1:1",
      music: "🎵 加音乐",
      title_action: "🔤 加标题",
      shorter: "➖ 更短",
      longer: "➕ 更长",
      export: "🎬 导出",
      remove: "删除",
      earlier: "往前移",
      later: "往后移",
      shorten: "缩短",
      cancel: "取消",
      sent: "已发送到聊天：请在那里查看机器人的回复。",
      media: "素材",
      no_media: "还没有素材。",
      image: "图片",
      video: "视频",
      audio: "音频",
      credits: "💳 {n} 积分",
      credits_unknown: "💳 积分未知",
      trial: "免费试用",
      personal: "你的 NemoVideo 账户",
      operator: "机器人的共享账户",
      last_video: "最新视频",
      no_video: "还没有视频：点击导出。",
      open_browser: "🌐 在浏览器中打开",
    },
  };
  // data-action → its label's key (the text keys are the actions' names but for "title")
  const ACTIONS = [
    ["ratio_9_16", "ratio_9_16"], ["ratio_16_9", "ratio_16_9"], ["ratio_1_1", "ratio_1_1"], ["music", "music"],
    ["title", "title_action"], ["shorter", "shorter"], ["longer", "longer"], ["export", "export"],
  ];
  const SEGMENT_OPS = [["remove", "remove"], ["earlier", "earlier"], ["later", "later"], ["shorter", "shorten"]];
  const PX_PER_SECOND = 20; // the timeline's scale: 30 s is 600 px, scrolled sideways on a phone
  const WATCH_SECONDS = 180; // after an edit, the state is refreshed for this long at most
  const REQUEST_TIMEOUT_MS = 15000;
  const TOAST_MS = 5000;

  const tg = window.Telegram && window.Telegram.WebApp;
  const app = document.getElementById("app");
  const notice = document.getElementById("notice");
  const toastBox = document.getElementById("toast");
  let lang = "en";
  let state = null;
  let stateKey = "";
  let stateSeq = 0; // only the newest state request's answer is drawn
  let switching = false; // no refresh while a switch is on its way: it could answer with the old project
  let watchUntil = 0;
  let watchTimer = 0;
  let toastTimer = 0;
  let fatal = false;

  const isZh = (code) => typeof code === "string" && code.toLowerCase().startsWith("zh");

  function t(key, vars) {
    let text = TEXTS[lang][key] ?? TEXTS.en[key] ?? key;
    for (const [name, value] of Object.entries(vars || {})) text = text.replace(`{${name}}`, String(value));
    return text;
  }

  /** An element with attributes (`text` sets its text, `on<event>` adds a listener) and children. */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "text") node.textContent = value;
      else if (name === "class") node.className = value;
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    node.append(...children.filter((child) => child !== null && child !== undefined && child !== false));
    return node;
  }

  /** An http(s) URL, or null: nothing else becomes a src or an href. */
  function safeUrl(url) {
    try {
      const parsed = new URL(url, location.href);
      return parsed.protocol === "https:" || parsed.protocol === "http:" ? parsed.href : null;
    } catch {
      return null;
    }
  }

  function clock(ms) {
    const seconds = Math.floor(ms / 1000);
    return `${Math.floor(seconds / 60)}:${String(seconds % 60).padStart(2, "0")}`;
  }

  const span = (ms) => (ms < 60000 ? t("seconds", { n: Number((ms / 1000).toFixed(1)) }) : clock(ms));

  // ---- messages -------------------------------------------------------------------------------

  /** Replaces the page with a message; nothing else happens after it. */
  function showFatal(key) {
    closeSheet();
    fatal = true;
    clearTimeout(watchTimer);
    document.body.replaceChildren(
      el("main", { class: "fatal" },
        el("h1", { text: t("title") }), el("p", { id: "studio-error", role: "alert", "data-reason": key, text: t(key) })),
    );
  }

  function showNotice(text) {
    notice.replaceChildren(el("span", { text }), el("button", { type: "button", class: "small", text: t("retry"),
      onclick: () => { notice.hidden = true; loadState(); } }));
    notice.hidden = false;
  }

  function showToast(text) {
    toastBox.textContent = text;
    toastBox.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { toastBox.hidden = true; }, TOAST_MS);
  }

  // ---- the API --------------------------------------------------------------------------------

  // Opened from a topic of the private chat (PROJECT_TOPICS), the studio shows that topic's project.
  const topic = Number(new URLSearchParams(location.search).get("topic")) || null;

  /** POSTs to /studio/api/<name>; the answer's body, or null once the failure has been shown. */
  async function api(name, payload) {
    if (fatal) return null;
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), REQUEST_TIMEOUT_MS);
    let response;
    let body = null;
    try {
      response = await fetch(`/studio/api/${name}`, {
        method: "POST",
        headers: { Authorization: "tma " + tg.initData, "Content-Type": "application/json" },
        body: JSON.stringify(topic ? { ...payload, topic } : payload),
        signal: abort.signal,
      });
      body = await response.json().catch(() => null);
    } catch {
      if (!fatal) showNotice(t("offline"));
      return null;
    } finally {
      clearTimeout(timer);
    }
    if (response.status === 401) showFatal("unverified");
    else if (response.status === 403) showFatal("forbidden");
    else if (!response.ok) showNotice(body && typeof body.message === "string" ? body.message : t("server", { status: response.status }));
    if (!response.ok) return null;
    notice.hidden = true;
    return body || {};
  }

  async function loadState() {
    if (switching) return;
    const seq = ++stateSeq;
    const next = await api("state", {});
    if (next && seq === stateSeq) render(next);
  }

  /** After an edit: refresh every refresh_seconds while the page is visible, for WATCH_SECONDS at most. */
  function watch() {
    watchUntil = Date.now() + WATCH_SECONDS * 1000;
    scheduleRefresh();
  }

  function scheduleRefresh() {
    clearTimeout(watchTimer);
    if (fatal || document.visibilityState !== "visible" || Date.now() >= watchUntil) return;
    const seconds = Math.min(60, Math.max(1, Number(state && state.refresh_seconds) || 5));
    watchTimer = setTimeout(async () => {
      await loadState();
      scheduleRefresh();
    }, seconds * 1000);
  }

  document.addEventListener("visibilitychange", async () => {
    clearTimeout(watchTimer);
    if (fatal || document.visibilityState !== "visible" || !state) return;
    await loadState(); // back from the chat: show what changed there
    scheduleRefresh();
  });

  /** Sends an edit to the chat (act or segment); the bot answers there. */
  async function send(name, payload, button) {
    if (button) button.disabled = true;
    const answer = await api(name, payload);
    if (button) button.disabled = false;
    if (!answer) return false;
    showToast(t("sent"));
    if (tg.HapticFeedback && tg.HapticFeedback.notificationOccurred) tg.HapticFeedback.notificationOccurred("success");
    watch();
    return true;
  }

  async function switchProject(select) {
    const previous = state.project && state.project.id;
    select.disabled = true;
    switching = true;
    const seq = ++stateSeq;
    const next = await api("switch", { project: select.value });
    switching = false;
    select.disabled = false;
    if (next && seq === stateSeq) render(next);
    else if (!next && previous) select.value = previous;
  }

  // ---- drawing --------------------------------------------------------------------------------

  function render(next) {
    const key = JSON.stringify(next);
    if (key === stateKey) return;
    stateKey = key;
    state = next;
    if (next.lang === "zh" || next.lang === "en") lang = next.lang;
    document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
    closeSheet();
    const oldScroll = app.querySelector(".timeline-scroll");
    const scrollLeft = oldScroll ? oldScroll.scrollLeft : 0;
    const oldVideo = document.getElementById("last-video"); // kept while its URL is the same: playback goes on
    app.replaceChildren(header(next), timeline(next), actions(), lastVideo(next, oldVideo), media(next), browserLink(next));
    app.removeAttribute("aria-busy");
    const scroller = app.querySelector(".timeline-scroll");
    if (scroller) scroller.scrollLeft = scrollLeft;
  }

  function header(s) {
    const projects = s.projects || [];
    const current = s.project;
    const select = el("select", { id: "project-switcher", onchange: (event) => switchProject(event.target) });
    for (const project of projects) {
      const label = project.rendering ? `${project.name} · 🎬 ${t("rendering")}` : project.name;
      select.append(el("option", { value: project.id, text: label, selected: current && project.id === current.id }));
    }
    if (!projects.length) select.disabled = true;
    const credits = s.credits || {};
    const amount = credits.available === null || credits.available === undefined
      ? t("credits_unknown") : t("credits", { n: credits.available });
    const account = TEXTS.en[credits.account] ? ` · ${t(credits.account)}` : "";
    return el("header", { class: "top" },
      el("h1", { id: "project-name", text: current ? current.name : t("title") },
        current && current.rendering ? el("span", { class: "badge", text: `🎬 ${t("rendering")}` }) : null),
      el("label", { class: "switcher" }, el("span", { text: t("project") }), select),
      el("p", { id: "credits", class: "hint", text: amount + account }));
  }

  /** Segments of one track in rows where none overlap (most tracks need one row). */
  function rows(segments) {
    const lanes = [];
    for (const segment of [...segments].sort((a, b) => a.start_ms - b.start_ms)) {
      const lane = lanes.find((row) => row.end <= segment.start_ms);
      if (lane) lane.items.push(segment);
      else lanes.push({ items: [segment] });
      (lane || lanes[lanes.length - 1]).end = segment.start_ms + segment.length_ms;
    }
    return lanes.map((lane) => lane.items);
  }

  function timeline(s) {
    const tracks = s.tracks || [];
    const section = el("section", { class: "timeline-section", "aria-labelledby": "timeline-heading" },
      el("h2", { id: "timeline-heading", text: t("timeline") }));
    if (!tracks.some((track) => (track.segments || []).length)) {
      section.append(el("p", { id: "timeline-empty", class: "empty", text: t("empty") }));
      return section;
    }
    const ends = tracks.flatMap((track) => (track.segments || []).map((seg) => seg.start_ms + seg.length_ms));
    const total = Math.max(Number(s.duration_ms) || 0, ...ends, 1000);
    const inner = el("div", { class: "timeline-inner" });
    inner.style.width = `${Math.ceil((total / 1000) * PX_PER_SECOND)}px`;
    inner.append(axis(total));
    tracks.forEach((track, trackIndex) => {
      const kind = ["video", "audio", "text"].includes(track.kind) ? track.kind : "other";
      const row = el("div", { class: `track track-${kind}`, role: "group", "aria-label": track.label || kind },
        el("div", { class: "track-label", text: track.label || kind }));
      for (const lane of rows(track.segments || [])) {
        row.append(el("div", { class: "lane" }, ...lane.map((seg) => segmentButton(seg, trackIndex, total))));
      }
      inner.append(row);
    });
    section.append(el("div", { class: "timeline-scroll" }, inner));
    return section;
  }

  function axis(total) {
    const seconds = total / 1000;
    const step = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600].find((s) => s * PX_PER_SECOND >= 48) || 600;
    const every = seconds <= 300 ? 1 : step; // a mark each second, labelled every `step`
    const marks = el("div", { class: "axis", "aria-hidden": "true" });
    for (let at = 0; at <= seconds; at += every) {
      const labelled = at % step === 0;
      const mark = el("span", { class: labelled ? "tick" : "tick minor", text: labelled ? clock(at * 1000) : null });
      mark.style.left = `${(at / seconds) * 100}%`;
      marks.append(mark);
    }
    return marks;
  }

  function segmentButton(seg, trackIndex, total) {
    const when = `${clock(seg.start_ms)} · ${span(seg.length_ms)}`;
    const volume = seg.volume === null || seg.volume === undefined ? null : `🔊 ${seg.volume}%`;
    const title = seg.title && seg.title !== seg.name ? `“${seg.title}”` : null;
    const thumbnail = seg.thumbnail ? safeUrl(seg.thumbnail) : null;
    const button = el("button", { type: "button", class: "segment", "data-track": trackIndex, "data-segment": seg.index,
      "aria-label": [seg.name, title, when, volume].filter(Boolean).join(", "),
      onclick: () => openSheet(seg, trackIndex, button) },
      thumbnail ? el("img", { class: "thumb", src: thumbnail, alt: "", loading: "lazy" }) : null,
      el("span", { class: "seg-name", text: seg.name }),
      title ? el("span", { class: "seg-title", text: title }) : null,
      el("span", { class: "seg-meta", text: volume ? `${when} · ${volume}` : when }));
    button.style.left = `${(seg.start_ms / total) * 100}%`;
    button.style.width = `${(seg.length_ms / total) * 100}%`;
    return button;
  }

  function actions() {
    return el("section", { class: "actions-section", "aria-labelledby": "actions-heading" },
      el("h2", { id: "actions-heading", text: t("actions") }),
      el("div", { class: "actions" }, ...ACTIONS.map(([action, key]) => el("button", {
        type: "button", "data-action": action, class: action === "export" ? "primary" : null, text: t(key),
        onclick: (event) => send("act", { action }, event.currentTarget) }))));
  }

  function lastVideo(s, oldVideo) {
    const section = el("section", { class: "video-section", "aria-labelledby": "video-heading" },
      el("h2", { id: "video-heading", text: t("last_video") }));
    const url = s.video && safeUrl(s.video.url);
    if (!url) {
      section.append(el("p", { class: "hint", text: t("no_video") }));
      return section;
    }
    const video = oldVideo && oldVideo.src === url ? oldVideo
      : el("video", { id: "last-video", controls: true, playsinline: true, preload: "metadata", src: url });
    section.append(video, el("p", { class: "hint video-name", text: s.video.name || "" }));
    return section;
  }

  function media(s) {
    const items = s.media || [];
    const section = el("section", { class: "media-section", "aria-labelledby": "media-heading" },
      el("h2", { id: "media-heading", text: t("media") }));
    if (!items.length) {
      section.append(el("p", { class: "hint", text: t("no_media") }));
      return section;
    }
    const icons = { image: "🖼", video: "🎞", audio: "🎵" };
    section.append(el("ul", { id: "media", class: "media" }, ...items.map((item) => {
      const url = item.kind === "image" ? safeUrl(item.url) : null;
      return el("li", { class: "media-item" },
        url ? el("img", { src: url, alt: "", loading: "lazy" }) : el("span", { class: "media-icon", "aria-hidden": "true", text: icons[item.kind] || "📄" }),
        el("span", { class: "media-name", text: item.name }),
        el("span", { class: "hint", text: TEXTS.en[item.kind] ? t(item.kind) : item.kind }));
    })));
    return section;
  }

  function browserLink(s) {
    const url = s.browser_url && safeUrl(s.browser_url);
    if (!url) return null;
    return el("p", { class: "browser" }, el("a", { id: "open-browser", class: "button", href: url, target: "_blank", rel: "noopener",
      text: t("open_browser"),
      onclick: (event) => { if (typeof tg.openLink === "function") { event.preventDefault(); tg.openLink(url); } } }));
  }

  // ---- the segment sheet ------------------------------------------------------------------------

  let sheetOpener = null;

  function openSheet(seg, trackIndex, opener) {
    closeSheet();
    sheetOpener = opener;
    const buttons = SEGMENT_OPS.map(([op, key]) => el("button", { type: "button", "data-op": op, class: op === "remove" ? "danger" : null,
      text: t(key), onclick: async (event) => {
        if (await send("segment", { track: trackIndex, segment: seg.index, op, digest: state.digest }, event.currentTarget)) closeSheet();
      } }));
    const sheet = el("div", { id: "segment-sheet", class: "sheet", role: "dialog", "aria-modal": "true", "aria-labelledby": "sheet-title" },
      el("div", { class: "sheet-backdrop", onclick: closeSheet }),
      el("div", { class: "sheet-panel" },
        el("h2", { id: "sheet-title", text: seg.name }),
        el("p", { class: "hint", text: `${clock(seg.start_ms)} · ${span(seg.length_ms)}` }),
        el("div", { class: "sheet-actions" }, ...buttons),
        el("button", { type: "button", class: "cancel", text: t("cancel"), onclick: closeSheet })));
    document.body.append(sheet);
    if (tg.BackButton) { tg.BackButton.onClick(closeSheet); tg.BackButton.show(); }
    buttons[0].focus();
  }

  function closeSheet() {
    const sheet = document.getElementById("segment-sheet");
    if (!sheet) return;
    sheet.remove();
    if (tg.BackButton) { tg.BackButton.offClick(closeSheet); tg.BackButton.hide(); }
    if (sheetOpener && sheetOpener.isConnected) sheetOpener.focus();
    sheetOpener = null;
  }

  document.addEventListener("keydown", (event) => { if (event.key === "Escape") closeSheet(); });

  // ---- start ----------------------------------------------------------------------------------

  if (!tg || !tg.initData) {
    lang = isZh(navigator.language) ? "zh" : "en";
    showFatal("open_from_bot");
    return;
  }
  tg.ready();
  tg.expand();
  const user = tg.initDataUnsafe && tg.initDataUnsafe.user;
  lang = user && isZh(user.language_code) ? "zh" : "en";
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  app.replaceChildren(el("p", { class: "loading", text: t("loading") }));
  loadState();
})();
