"""Everything the bot says, in English and Chinese, as HTML templates.

`say(lang, key, **values)` escapes every value, so backend text and file names can never break
Telegram's HTML parser or inject markup. Pure functions only.

Why one module of this length: it is a table, every sentence the bot says in both languages, kept
together so a translation is never missing.
"""

from __future__ import annotations

import html
import re
from typing import Literal

Lang = Literal["en", "zh"]

TEXTS: dict[str, tuple[str, str]] = {
    "setting_up": ("⚙️ Setting things up…", "⚙️ 正在准备…"),
    "ready": ("✅ Connected and ready.", "✅ 已连接，可以开始了。"),
    "try_saying": ("Try saying:", "试着说："),
    "try_this": ("Tap to try it:", "点击试试："),
    # The timeline picture's words (plain text, drawn on the image).
    "picture_header": ("Timeline · {tracks} · {total} total", "时间线 · {tracks} · 共 {total}"),
    "picture_one_track": ("1 track", "1 条轨道"),
    "picture_tracks": ("{count} tracks", "{count} 条轨道"),
    "picture_empty": ("empty", "空"),
    "picture_more": ("+{count} more", "另有 {count} 条轨道"),
    "picture_volume": ("vol {volume}%", "音量 {volume}%"),
    "picture_Video": ("Video", "视频"),
    "picture_Audio": ("Audio", "音频"),
    "picture_Voice": ("Voice", "配音"),
    "picture_BGM": ("BGM", "背景音乐"),
    "picture_Title": ("Title", "标题"),
    "picture_Text": ("Text", "文字"),
    "picture_Track": ("Track", "轨道"),
    "help": (
        "<b>How it works</b>\n"
        "• Send photos, clips or audio (as files for best quality), or paste a link.\n"
        "• Describe the video you want; I pass it to the AI video agent and show its replies.\n"
        "• <code>status</code> shows the timeline, <code>credits</code> your balance, "
        "<code>export</code> renders a 1080p MP4 and sends it here.\n\n"
        "Commands: /export /status /credits /new (fresh project) /projects (switch) /cancel (stop the running request) /help\n"
        "Formats: {formats}. Up to {limit} MB per file.",
        "<b>使用方法</b>\n"
        "• 发送图片、视频片段或音频（以文件形式发送画质最好），或粘贴链接。\n"
        "• 描述你想要的视频，我会转给 AI 视频助手并显示它的回复。\n"
        "• 发送 <code>状态</code> 查看时间线，<code>积分</code> 查看余额，"
        "<code>导出</code> 渲染 1080p MP4 并发到这里。\n\n"
        "命令：/export /status /credits /new（新项目） /projects（切换项目） /cancel（停止当前请求） /help\n"
        "格式：{formats}。每个文件最大 {limit} MB。",
    ),
    "busy": (
        "⏳ I'm still working on your previous request. Wait for it to finish, or send /cancel to stop it.",
        "⏳ 我还在处理你上一个请求。请稍候，或发送 /cancel 停止。",
    ),
    "cancelled": (
        "⏹ Stopped waiting. The agent may still finish what it started: say <code>status</code> to check.",
        "⏹ 已停止等待。AI 可能仍会完成已开始的操作：发送 <code>状态</code> 查看。",
    ),
    "nothing_to_cancel": ("Nothing is running right now.", "当前没有正在进行的请求。"),
    "still_working": ("⏳ Still working…", "⏳ 仍在处理中…"),
    "turn_queued": (
        "⏳ Lots of people are making videos right now: you're next in line, and I'll start as soon as "
        "the agent is free.",
        "⏳ 现在有很多人在制作视频：你已在队列中，AI 一空闲我就开始。",
    ),
    "turn_changes": (
        "✅ Done. What changed on the timeline:\n{changes}",
        "✅ 完成。时间线的变化：\n{changes}",
    ),
    "turn_no_changes": (
        "✅ The agent finished without a reply, and the timeline looks unchanged. "
        "Say <code>status</code> to see it, or tell me what to do next.",
        "✅ AI 已完成但没有回复，时间线看起来没有变化。发送 <code>状态</code> 查看，或告诉我下一步。",
    ),
    "turn_dropped": (
        "⚠️ The connection to the agent dropped mid-reply. It may still be working, so I won't send "
        "your message again; I'll check the timeline and tell you what changed.",
        "⚠️ 与 AI 的连接中断了。它可能仍在处理，所以我不会重复发送你的消息；我会检查时间线并告诉你变化。",
    ),
    "turn_timeout": (
        "⌛ The agent has been working for over {minutes} minutes, so I stopped waiting. It may still finish: "
        "say <code>status</code> in a while to check.",
        "⌛ AI 已处理超过 {minutes} 分钟，我停止了等待。它可能仍会完成：稍后发送 <code>状态</code> 查看。",
    ),
    "agent_error": (
        "⚠️ The agent couldn't finish this one ({reason}). Try rephrasing your request.",
        "⚠️ AI 未能完成这次请求（{reason}）。请换个说法再试。",
    ),
    "turn_interrupted": (
        "⚠️ I restarted while working on your request (“{request}”). I won't send it again, so nothing is "
        "done twice; say <code>status</code> to see the timeline, or send the request again if needed.",
        "⚠️ 处理你的请求（“{request}”）时我重启了。为避免重复操作，我不会自动重发；"
        "发送 <code>状态</code> 查看时间线，如有需要请重新发送请求。",
    ),
    "new_project": (
        "🆕 Started a fresh project, {name}. Send media or describe the video you want; "
        "your other projects stay in /projects.",
        "🆕 已开始新项目：{name}。发送素材或描述你想要的视频；其他项目仍在 /projects 中。",
    ),
    # Several projects per chat (/projects, /rename)
    "project_default": ("Project {number}", "项目 {number}"),
    "switching_projects": ("switching projects", "切换项目"),
    "projects_full": (
        "🗂 This chat already has {count} projects, the most I keep. Switch to one in /projects and carry on there.",
        "🗂 这个聊天已有 {count} 个项目，已达上限。请在 /projects 中切换到其中一个继续。",
    ),
    "project_topic": (
        "🆕 This topic is your new project, {name}. Send media or describe the video you want here; "
        "each topic keeps its own project.",
        "🆕 这个话题就是你的新项目：{name}。在这里发送素材或描述你想要的视频；每个话题都有自己的项目。",
    ),
    "projects_header": (
        "🗂 <b>Your projects</b> (tap one to switch to it):",
        "🗂 <b>你的项目</b>（点按即可切换）：",
    ),
    "project_line": ("• {name} · changed {changed}", "• {name} · {changed}更新"),
    "project_line_current": (
        "• <b>{name}</b> (current) · changed {changed}",
        "• <b>{name}</b>（当前）· {changed}更新",
    ),
    "project_rendering": (" · ⏳ rendering", " · ⏳ 正在渲染"),
    "project_unknown": (
        "That project is no longer here. Send /projects to see the list.",
        "这个项目已不在列表中。发送 /projects 查看列表。",
    ),
    "project_switched": (
        "🗂 Switched to {name}. Say <code>status</code> to see its timeline.",
        "🗂 已切换到 {name}。发送 <code>状态</code> 查看它的时间线。",
    ),
    "rename_help": (
        "Send /rename followed by the new name, for example <code>/rename Summer teaser</code>.",
        "请发送 /rename 加上新名称，例如 <code>/rename 夏日预告</code>。",
    ),
    "project_renamed": ("✏️ This project is now called {name}.", "✏️ 这个项目现在叫 {name}。"),
    "ago_now": ("just now", "刚刚"),
    "ago_minutes": ("{n} min ago", "{n} 分钟前"),
    "ago_hours": ("{n} h ago", "{n} 小时前"),
    "ago_days": ("{n} days ago", "{n} 天前"),
    "timeline": ("📋 {timeline}", "📋 {timeline}"),
    "timeline_empty": (
        "📋 The timeline is empty. Send photos or clips, or describe the video you want.",
        "📋 时间线是空的。发送图片或视频片段，或描述你想要的视频。",
    ),
    "media_count": ("🗂 Media in this project: {count} ({kinds}).", "🗂 项目中的素材：{count} 个（{kinds}）。"),
    "credits": (
        "💳 Credits: <b>{available}</b> available, {frozen} frozen, {total} total.",
        "💳 积分：可用 <b>{available}</b>，冻结 {frozen}，总计 {total}。",
    ),
    "register_hint": (
        'You are on a free anonymous account. <a href="{link}">Register</a> to keep your work and get more credits.',
        '你正在使用免费匿名账户。<a href="{link}">注册</a>即可保存作品并获得更多积分。',
    ),
    "out_of_credits_anonymous": (
        '🪫 You\'re out of credits. <a href="{link}">Register for free</a> to get more and keep your project.',
        '🪫 积分已用完。<a href="{link}">免费注册</a>即可获得更多积分并保留项目。',
    ),
    "out_of_credits": (
        "🪫 You're out of credits. Top up your credits in your NemoVideo account, then try again.",
        "🪫 积分已用完。请在 NemoVideo 账户中充值后重试。",
    ),
    "out_of_credits_shared": (
        "🪫 This bot's shared credits are used up for now. Its operator has been told; please try again later.",
        "🪫 这个机器人的共享积分暂时用完了。已通知管理员，请稍后再试。",
    ),
    "export_not_allowed_plan": (
        '🔒 Export needs a plan that includes it. <a href="{link}">Upgrade your plan</a> to unlock export '
        "(this is not about credits).",
        '🔒 导出需要包含导出功能的套餐。<a href="{link}">升级套餐</a>即可解锁导出（与积分无关）。',
    ),
    "export_not_allowed_shared": (
        "🔒 Export isn't available on this bot's shared account right now. Its operator has been told; "
        "please try again later.",
        "🔒 这个机器人的共享账户暂时无法导出。已通知管理员，请稍后再试。",
    ),
    "trials_used_up": (
        "🎟 This bot's free trials are used up for now (NemoVideo gives out only a few each week).",
        "🎟 这个机器人的免费试用名额暂时用完了（NemoVideo 每周只发放少量试用）。",
    ),
    "way_login": (
        '• Use your own NemoVideo account: sign up on <a href="{site}">nemovideo.com</a>, make an API token '
        "under Settings → API Tokens, and send /login here.",
        '• 使用你自己的 NemoVideo 账户：在 <a href="{site}">nemovideo.com</a> 注册，在 设置 → API Tokens '
        "中创建 API 令牌，然后在这里发送 /login。",
    ),
    "way_login_private": (
        '• Use your own NemoVideo account: sign up on <a href="{site}">nemovideo.com</a>, make an API token '
        'under Settings → API Tokens, and send /login to me in a <a href="{link}">private chat</a>.',
        '• 使用你自己的 NemoVideo 账户：在 <a href="{site}">nemovideo.com</a> 注册，在 设置 → API Tokens '
        '中创建 API 令牌，然后在<a href="{link}">私聊</a>中向我发送 /login。',
    ),
    "way_operator": (
        "• Or ask the bot's operator to add credits: the bot works again as soon as they do.",
        "• 或者请机器人的管理员添加积分：添加后即可继续使用。",
    ),
    "way_later": (
        "• Or try again later: new trials come with the week.",
        "• 或者稍后再试：新的试用名额每周发放。",
    ),
    "personal_token_refused": (
        "🔑 NemoVideo refused your account's token: it was revoked or has expired. Make a new one on "
        '<a href="{site}">nemovideo.com</a> under Settings → API Tokens and send /login again, '
        "or send /logout to stop using your own account here.",
        '🔑 NemoVideo 拒绝了你账户的令牌：它已被撤销或已过期。请在 <a href="{site}">nemovideo.com</a> 的 '
        "设置 → API Tokens 中创建新令牌并再次发送 /login，或发送 /logout 停止在这里使用你自己的账户。",
    ),
    "personal_token_refused_group": (
        "🔑 NemoVideo refused your account's token: it was revoked or has expired. Make a new one on "
        '<a href="{site}">nemovideo.com</a> under Settings → API Tokens and send /login to me in a '
        '<a href="{link}">private chat</a>.',
        '🔑 NemoVideo 拒绝了你账户的令牌：它已被撤销或已过期。请在 <a href="{site}">nemovideo.com</a> 的 '
        '设置 → API Tokens 中创建新令牌，然后在<a href="{link}">私聊</a>中向我发送 /login。',
    ),
    "account_trial": ("🎟 This chat runs on a free trial.", "🎟 这个会话使用的是免费试用。"),
    "account_personal": (
        "👤 This chat runs on your own NemoVideo account.",
        "👤 这个会话使用的是你自己的 NemoVideo 账户。",
    ),
    "account_shared": (
        "🤝 This chat runs on the bot's shared account.",
        "🤝 这个会话使用的是机器人的共享账户。",
    ),
    "login_hint": (
        "Send /login to use your own NemoVideo account instead.",
        "发送 /login 即可改用你自己的 NemoVideo 账户。",
    ),
    "login_help": (
        "🔑 <b>Use your own NemoVideo account</b>\n"
        '1. Sign in on <a href="{site}">nemovideo.com</a> (sign up if you are new).\n'
        "2. Open Settings → API Tokens and make a token (scopes: read, write, upload, render).\n"
        "3. Send the token here as a message, or as <code>/login your-token</code>.\n\n"
        "I delete the message that holds it right away and keep the token encrypted. /logout unlinks it.",
        "🔑 <b>使用你自己的 NemoVideo 账户</b>\n"
        '1. 登录 <a href="{site}">nemovideo.com</a>（新用户请先注册）。\n'
        "2. 打开 设置 → API Tokens，创建一个令牌（权限：read、write、upload、render）。\n"
        "3. 把令牌作为消息发到这里，或发送 <code>/login 你的令牌</code>。\n\n"
        "我会立即删除包含令牌的消息，并加密保存令牌。发送 /logout 可解除关联。",
    ),
    "login_disabled": (
        "🔒 This bot's operator hasn't turned on personal accounts, so /login isn't available here.",
        "🔒 这个机器人的管理员没有开启个人账户，所以这里无法使用 /login。",
    ),
    "login_private_only": (
        '🔐 For your safety, log in in a <a href="{link}">private chat</a> with me, never in a group.',
        '🔐 为了你的安全，请在与我的<a href="{link}">私聊</a>中登录，不要在群组里登录。',
    ),
    "login_checking": ("🔑 Checking your token with NemoVideo…", "🔑 正在向 NemoVideo 验证你的令牌…"),
    "login_done": (
        "✅ Your NemoVideo account is linked: <b>{available}</b> credits available. "
        "Our private chat now runs on it, starting with a fresh project.",
        "✅ 已关联你的 NemoVideo 账户：可用积分 <b>{available}</b>。我们的私聊现在使用这个账户，并从一个新项目开始。",
    ),
    "login_done_groups": (
        "So do your own projects in groups where everyone has their own project.",
        "在每人各有项目的群组中，你自己的项目也使用这个账户。",
    ),
    "login_done_tail": (
        "/credits shows the balance, /logout unlinks the account.",
        "发送 /credits 查看余额，发送 /logout 解除关联。",
    ),
    "login_not_deleted": (
        "⚠️ I couldn't delete the message with your token: please delete it yourself.",
        "⚠️ 我无法删除包含令牌的消息：请你自己删除它。",
    ),
    "login_refused": (
        "❌ NemoVideo didn't accept that token (it may be cut short, revoked or expired). Make a new one under "
        "Settings → API Tokens and send it again.",
        "❌ NemoVideo 没有接受这个令牌（可能不完整、已被撤销或已过期）。请在 设置 → API Tokens 中创建新令牌后重新发送。",
    ),
    "login_unchecked": (
        "😕 I couldn't check your token with NemoVideo just now, so it isn't linked. Please send it again in a minute.",
        "😕 我暂时无法向 NemoVideo 验证你的令牌，所以没有关联。请一分钟后重新发送。",
    ),
    "logout_done": (
        "👋 Your NemoVideo account is unlinked and its token forgotten here; your next request starts a fresh "
        'project. To revoke the token itself, go to <a href="{site}">nemovideo.com</a> → Settings → API Tokens.',
        "👋 已解除关联你的 NemoVideo 账户，这里不再保存它的令牌；你的下一个请求将从新项目开始。"
        '如需撤销令牌本身，请前往 <a href="{site}">nemovideo.com</a> → 设置 → API Tokens。',
    ),
    "logout_none": (
        "You haven't linked a NemoVideo account here, so there's nothing to unlink.",
        "你还没有在这里关联 NemoVideo 账户，无需解除关联。",
    ),
    "token_leaked_deleted": (
        "🔐 {name}, I deleted your message: it held a NemoVideo token that anyone here could have used. "
        '<b>Revoke that token now</b> on <a href="{site}">nemovideo.com</a> → Settings → API Tokens, make a '
        'new one, and send it with /login in a <a href="{link}">private chat</a> with me.',
        "🔐 {name}，我删除了你的消息：其中包含一个群里任何人都能使用的 NemoVideo 令牌。"
        '<b>请立即撤销该令牌</b>（<a href="{site}">nemovideo.com</a> → 设置 → API Tokens），创建新令牌，'
        '然后在与我的<a href="{link}">私聊</a>中用 /login 发送。',
    ),
    "token_leaked_kept": (
        "🔐 {name}, your message holds a NemoVideo token that anyone here can use, and I can't delete it. "
        "<b>Delete that message and revoke the token now</b> on "
        '<a href="{site}">nemovideo.com</a> → Settings → API Tokens, then send a new one with /login in a '
        '<a href="{link}">private chat</a> with me.',
        "🔐 {name}，你的消息中包含一个群里任何人都能使用的 NemoVideo 令牌，而我无法删除它。"
        '<b>请删除该消息并立即撤销令牌</b>（<a href="{site}">nemovideo.com</a> → 设置 → API Tokens），'
        '然后在与我的<a href="{link}">私聊</a>中用 /login 发送新令牌。',
    ),
    "token_not_taken": (
        "🔒 That looks like a NemoVideo token. This bot's operator hasn't turned on personal accounts, so I "
        "deleted it without using it. Keep your tokens to yourself.",
        "🔒 这看起来是一个 NemoVideo 令牌。这个机器人的管理员没有开启个人账户，所以我已删除它且没有使用。请妥善保管你的令牌。",
    ),
    "admin_credits_empty": (
        "🪫 The bot's shared NemoVideo account is out of credits ({available} available). People are told the "
        "shared credits are used up; top up the account on nemovideo.com.",
        "🪫 机器人的共享 NemoVideo 账户积分已用完（可用 {available}）。用户会被告知共享积分已用完；请在 nemovideo.com 充值。",
    ),
    "admin_credits_low": (
        "⚠️ The bot's shared NemoVideo account is running low: {available} credits left (the warning is below "
        "{threshold}).",
        "⚠️ 机器人的共享 NemoVideo 账户积分不多了：剩余 {available}（低于 {threshold} 时提醒）。",
    ),
    "admin_export_blocked": (
        "🔒 NemoVideo refused an export on the bot's shared account (HTTP 402: the plan does not include "
        "export). Upgrade the account's plan on nemovideo.com.",
        "🔒 NemoVideo 拒绝了机器人共享账户的导出（HTTP 402：套餐不包含导出）。请在 nemovideo.com 升级该账户的套餐。",
    ),
    "open_project": (
        "🌐 Your project opens in the browser with the button below. Anyone with the link can open it, so "
        "keep it to yourself.",
        "🌐 点击下方按钮即可在浏览器中打开你的项目。任何拿到链接的人都能打开它，请不要外传。",
    ),
    "button_open": ("🌐 Open in browser", "🌐 在浏览器中打开"),
    "video_ready_plain": ("🎬 Your video is ready!", "🎬 视频已完成！"),
    "export_empty": (
        "🎬 There's nothing on the timeline to export yet. Send media and describe your video first.",
        "🎬 时间线上还没有可导出的内容。请先发送素材并描述你的视频。",
    ),
    "render_pending": ("🎬 Export queued…", "🎬 导出排队中…"),
    "render_processing": (
        "🎬 Rendering your video…\n{bar} {progress}% · ⏱ {elapsed}",
        "🎬 正在渲染视频…\n{bar} {progress}% · ⏱ {elapsed}",
    ),
    "render_queued": ("🎬 Export queued… ⏱ {elapsed}", "🎬 导出排队中… ⏱ {elapsed}"),
    "render_completed": ("✅ Render complete, sending your video…", "✅ 渲染完成，正在发送视频…"),
    "render_failed": ("❌ The render failed: {reason}", "❌ 渲染失败：{reason}"),
    "render_too_long": (
        "⌛ The render has taken over {minutes} minutes, so I stopped waiting for it. Tap Retry to start a new one.",
        "⌛ 渲染已超过 {minutes} 分钟，我停止了等待。点击重试重新开始。",
    ),
    "video_ready": ("🎬 Your video is ready! Download: {url}", "🎬 视频已完成！下载链接：{url}"),
    "video_ready_again": (
        "🎬 Your video is ready. If it didn't come through above, download it here: {url}",
        "🎬 视频已完成。如果上面没有收到视频，请在这里下载：{url}",
    ),
    "video_ready_unattached": (
        "🎬 Your video is ready. I couldn't attach the file here; download it: {url}",
        "🎬 视频已完成。无法在此附上文件；下载链接：{url}",
    ),
    "video_ready_link": (
        "🎬 Your video is ready ({size}), too large to send here. Download it: {url}",
        "🎬 视频已完成（{size}），太大无法在此发送。下载链接：{url}",
    ),
    "video_again": ("🎬 Here's your video again. Download: {url}", "🎬 再发一次你的视频。下载链接：{url}"),
    "export_unchanged": (
        "🎬 The timeline hasn't changed since your last export, so here's that video again. Download: {url}",
        "🎬 自上次导出后时间线没有变化，这是上次导出的视频。下载链接：{url}",
    ),
    "nothing_to_resend": (
        "🎬 There's no finished video in this chat yet. Say <code>export</code> to make one.",
        "🎬 这个会话还没有完成的视频。发送 <code>导出</code> 来制作一个。",
    ),
    "export_running": (
        "🎬 This project is already rendering; I'll send the video as soon as it's done.",
        "🎬 这个项目正在渲染，完成后我会马上发给你。",
    ),
    "export_not_allowed": (
        '🔒 Export needs a registered or upgraded plan. <a href="{link}">Register or upgrade your plan</a> '
        "to unlock export (this is not about credits).",
        '🔒 导出需要注册或升级套餐。<a href="{link}">注册或升级套餐</a>即可解锁导出（与积分无关）。',
    ),
    "upload_help": (
        "📎 Send photos, videos or audio right here (as files for the best quality), or paste a link to one. "
        "Formats: {formats}. Up to {limit} MB per file.",
        "📎 直接在这里发送图片、视频或音频（以文件形式发送画质最好），或粘贴文件链接。格式：{formats}。每个文件最大 {limit} MB。",
    ),
    "uploading": ("📤 Uploading {count} file(s)…", "📤 正在上传 {count} 个文件…"),
    "upload_progress": (
        "📤 Uploading {count} file(s)…\n{bar} {percent}% · {sent} of {total}",
        "📤 正在上传 {count} 个文件…\n{bar} {percent}% · {sent} / {total}",
    ),
    "generated_image": ("🖼 New image in your project: {name}", "🖼 项目中的新图片：{name}"),
    "generated_clip": ("🎞 New clip in your project: {name}", "🎞 项目中的新片段：{name}"),
    "uploaded": ("📎 Added to your project:", "📎 已添加到项目："),
    "upload_refused": ("⚠️ Not added:", "⚠️ 未添加："),
    "unsupported": (
        "{name}: {detail} is not a format the video editor takes. Use one of: {formats}.",
        "{name}：不支持 {detail} 格式。支持的格式：{formats}。",
    ),
    "voice_format": (
        "{name}: voice notes (Opus) aren't supported. Send the audio as MP3, M4A or WAV, or type your request.",
        "{name}：不支持语音消息（Opus）。请以 MP3、M4A 或 WAV 发送音频，或直接输入文字。",
    ),
    "empty": ("{name}: the file is empty.", "{name}：文件是空的。"),
    "unreadable": (
        "{name}: the content isn't a readable {detail} file (it may be damaged or renamed).",
        "{name}：内容不是可读取的 {detail} 文件（可能已损坏或被改名）。",
    ),
    "mismatch": (
        "{name}: the name says one format but the content is another ({detail}). Rename it or send the original.",
        "{name}：文件名与内容格式不符（{detail}）。请改名或发送原始文件。",
    ),
    "truncated": (
        "{name}: the file is incomplete (cut short). Send it again.",
        "{name}：文件不完整（被截断）。请重新发送。",
    ),
    "too_large": (
        "{name}: {size} is over the {limit} MB limit. Trim or compress it, or send a link to it.",
        "{name}：{size}，超过 {limit} MB 上限。请剪短或压缩，或发送文件链接。",
    ),
    "telegram_too_large": (
        "{name}: {size} is more than Telegram lets bots download ({limit} MB). "
        "Send a link to the file instead (for example from Google Drive or Dropbox).",
        "{name}：{size}，超过 Telegram 允许机器人下载的 {limit} MB。请改为发送文件链接（例如 Google Drive 或 Dropbox）。",
    ),
    "backend_unsupported": (
        "{name}: the video service refused this file type. Use one of: {formats}.",
        "{name}：视频服务不接受此文件类型。支持的格式：{formats}。",
    ),
    "backend_too_large": (
        "{name}: the video service says the file is too large. Trim or compress it and try again.",
        "{name}：视频服务提示文件过大。请剪短或压缩后重试。",
    ),
    "download_failed": (
        "{name}: I couldn't fetch it from Telegram. Please send it again.",
        "{name}：无法从 Telegram 获取该文件。请重新发送。",
    ),
    "backend_unavailable": (
        "😕 The video service isn't answering right now. Please try again in a minute.",
        "😕 视频服务暂时没有响应。请一分钟后再试。",
    ),
    "rate_limited": (
        "⏳ The video service is busy right now. Please try again in a minute.",
        "⏳ 视频服务现在很忙。请一分钟后再试。",
    ),
    "operator_token": (
        "🔧 The bot's NemoVideo account needs attention from its operator. Please try again later.",
        "🔧 机器人的 NemoVideo 账户需要管理员处理。请稍后再试。",
    ),
    "storage_unavailable": (
        "😕 I'm briefly unavailable (my storage isn't answering). Please send that again in a minute.",
        "😕 我暂时无法服务（存储没有响应）。请一分钟后再发送一次。",
    ),
    "not_allowed": (
        "🔒 Sorry, this bot is private: it only works for the people its operator allowed.",
        "🔒 抱歉，这是一个私有机器人，只对管理员允许的用户开放。",
    ),
    "limit_turns": (
        "⏳ That's a lot of requests in a short time. Please try again in {minutes} minute(s).",
        "⏳ 短时间内请求太多了。请在 {minutes} 分钟后再试。",
    ),
    "limit_uploads": (
        "⏳ That's a lot of uploads in a short time. Please try again in {minutes} minute(s).",
        "⏳ 短时间内上传太多了。请在 {minutes} 分钟后再试。",
    ),
    "admins_only": (
        "🔒 In this group, only admins can start a new project or export.",
        "🔒 在这个群组中，只有管理员可以开始新项目或导出。",
    ),
    "usage": (
        "📊 Today (UTC): {active} active chat(s), {turns} turn(s), {uploads} upload(s), "
        "{renders} render(s), {delivered} delivered, {failures} failure(s).",
        "📊 今天（UTC）：活跃会话 {active} 个，对话 {turns} 次，上传 {uploads} 次，渲染 {renders} 次，"
        "已交付 {delivered} 个，失败 {failures} 次。",
    ),
    "unexpected": (
        "😕 Something went wrong on my side. Please try again.",
        "😕 我这边出了点问题。请再试一次。",
    ),
    "unsupported_message": (
        "I work with text, photos, videos, audio and files. Describe your video or send media.",
        "我可以处理文字、图片、视频、音频和文件。请描述你的视频或发送素材。",
    ),
    "button_export": ("🎬 Export", "🎬 导出"),
    "button_timeline": ("📋 Timeline", "📋 时间线"),
    "button_retry": ("🔁 Retry export", "🔁 重新导出"),
    "button_ratio_9_16": ("📱 9:16", "📱 9:16"),
    "button_ratio_16_9": ("🖥 16:9", "🖥 16:9"),
    "button_ratio_1_1": ("⬛ 1:1", "⬛ 1:1"),
    "button_music": ("🎵 Add music", "🎵 加音乐"),
    "button_title": ("🔤 Add a title", "🔤 加标题"),
    "button_shorter": ("➖ Shorter", "➖ 更短"),
    "button_longer": ("➕ Longer", "➕ 更长"),
    "button_example": ("💬 {example}", "💬 {example}"),
    # What a quick-action button asks the agent (plain text: it is the user's message to the agent).
    "do_ratio_9_16": ("Change the aspect ratio to 9:16 (vertical).", "把画面比例改为 9:16（竖屏）。"),
    "do_ratio_16_9": ("Change the aspect ratio to 16:9 (landscape).", "把画面比例改为 16:9（横屏）。"),
    "do_ratio_1_1": ("Change the aspect ratio to 1:1 (square).", "把画面比例改为 1:1（方形）。"),
    "do_music": (
        "Add background music that fits the video.",
        "给视频加上合适的背景音乐。",
    ),
    "do_title": (
        "Add a title at the start of the video.",
        "在视频开头加一个标题。",
    ),
    "do_shorter": (
        "Make the video shorter: keep the best parts.",
        "把视频剪短一些：保留最精彩的部分。",
    ),
    "do_longer": (
        "Make the video longer: give each part more time.",
        "把视频加长一些：让每个部分多停留一会儿。",
    ),
    "you_asked": ("🗣 {request}", "🗣 {request}"),
    "timeline_picture": (
        "📋 Timeline: {tracks} track(s), {duration} in all. Details below.",
        "📋 时间线：{tracks} 条轨道，共 {duration}。详情见下方。",
    ),
    "button_stop": ("⏹ Stop", "⏹ 停止"),
    "button_new": ("🆕 New project", "🆕 新项目"),
    "button_studio": ("🎛 Studio", "🎛 工作室"),
    "studio_changed": (
        "The timeline has changed since the studio drew it: look again and tap the clip once more.",
        "时间线在工作室显示后已有变化：请再看一下，重新点按该片段。",
    ),
    "studio_no_chat": (
        "I can't write to you in our chat: open the bot, press Start, then try again.",
        "我无法在聊天中给你发消息：请打开机器人，点击“开始”，然后重试。",
    ),
    # A touch on a segment in the studio, as an instruction to the agent (plain text: see `words`)
    "do_segment_remove": (
        "Remove “{name}” ({track}, {start}–{end}) from the timeline.",
        "从时间线中删除“{name}”（{track}，{start}–{end}）。",
    ),
    "do_segment_earlier": (
        "Move “{name}” ({track}, {start}–{end}) earlier in the timeline.",
        "把“{name}”（{track}，{start}–{end}）在时间线上往前移。",
    ),
    "do_segment_later": (
        "Move “{name}” ({track}, {start}–{end}) later in the timeline.",
        "把“{name}”（{track}，{start}–{end}）在时间线上往后移。",
    ),
    "do_segment_shorter": (
        "Make “{name}” ({track}, {start}–{end}) shorter.",
        "把“{name}”（{track}，{start}–{end}）缩短。",
    ),
    "track_Video": ("Video", "视频"),
    "track_BGM": ("BGM", "背景音乐"),
    "track_Voice": ("Voice", "配音"),
    "track_Title": ("Title", "标题"),
    "track_Track": ("Track", "轨道"),
    "gui_export": ('say "export" (or tap Export below)', "发送“导出”（或点击下方的导出按钮）"),
    "gui_timeline": ('say "status" (or tap Timeline below)', "发送“状态”（或点击下方的时间线按钮）"),
    "gui_drag": ("tell me what to move", "告诉我要移动什么"),
    "gui_action": ('tell me "{action}"', "告诉我“{action}”"),
}


LONE_SURROGATE = re.compile("[\ud800-\udfff]")  # JSON's "\ud83c" decodes to one; UTF-8 cannot encode it


def sendable(text: str) -> str:
    """Text that encodes as UTF-8: half an emoji (a lone surrogate) from backend JSON becomes �."""
    return LONE_SURROGATE.sub("\ufffd", text)


def language_of(code: str | None) -> Lang:
    """The bot's reply language for a Telegram `language_code`."""
    return "zh" if code and code.lower().startswith("zh") else "en"


def session_language(code: str | None) -> str:
    """The agent session language for a Telegram `language_code` (`en`, `zh-CN`, `ja`, `pt-BR` ...)."""
    if not code:
        return "en"
    base, _, region = code.replace("_", "-").partition("-")
    base = base.lower()
    if base == "zh":
        return "zh-TW" if region.lower() in ("hant", "tw", "hk", "mo") else "zh-CN"
    if not base.isalpha() or len(base) > 3:
        return "en"
    return f"{base}-{region.upper()}" if region.isalpha() and len(region) == 2 else base


def words(lang: Lang, key: str, **values: object) -> str:
    """The message `key` in `lang` as plain text, values as they are (for the agent, never for HTML)."""
    return TEXTS[key][0 if lang == "en" else 1].format(**values)


def say(lang: Lang, key: str, **values: object) -> str:
    """The message `key` in `lang`, with every value HTML-escaped."""
    template = TEXTS[key][0 if lang == "en" else 1]
    return template.format(**{k: html.escape(str(v)) for k, v in values.items()})


def bullet_list(lines: list[str]) -> str:
    """Lines as a bulleted block (escape plain lines, or pass lines that `say` produced)."""
    return "\n".join(f"• {line}" for line in lines)


def amount(value: float) -> str:
    """A number of credits as people write it: `95`, `12.50`."""
    return f"{value:.0f}" if value == int(value) else f"{value:.2f}"


BAR_CELLS = 10


def progress_bar(percent: float, cells: int = BAR_CELLS) -> str:
    """`▓▓▓▓░░░░░░` for 40 %: whole cells only, so the bar is full only at 100 %."""
    filled = int(max(0.0, min(100.0, percent)) * cells // 100)
    return "▓" * filled + "░" * (cells - filled)


def clock(seconds: float) -> str:
    """Elapsed time as `mm:ss` (`75:03` past an hour; a negative span, from clocks apart, is 00:00)."""
    whole = max(0, int(seconds))
    return f"{whole // 60:02d}:{whole % 60:02d}"
