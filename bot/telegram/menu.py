"""The command menu Telegram shows, in English and Chinese: /login and /logout in private chats only;
and, with the studio, the menu button that opens it in private chats."""

from __future__ import annotations

from telegram import (
    Bot,
    BotCommand,
    BotCommandScopeAllGroupChats,
    BotCommandScopeAllPrivateChats,
    MenuButtonCommands,
    MenuButtonWebApp,
    WebAppInfo,
)

PRIVATE_ONLY = frozenset({"start", "login", "logout"})  # a token is given in private, never in a group
COMMANDS = {
    "en": [
        ("start", "Start: greeting and examples"),
        ("help", "How to use the bot"),
        ("status", "Show the timeline"),
        ("credits", "Show your credits"),
        ("export", "Render and send the 1080p MP4"),
        ("new", "Start a fresh project"),
        ("projects", "Your projects: switch between them"),
        ("rename", "Rename the current project"),
        ("cancel", "Stop the running request"),
        ("open", "Open the project in the browser"),
        ("login", "Use your own NemoVideo account"),
        ("logout", "Stop using your own account"),
    ],
    "zh": [
        ("start", "开始：问候与示例"),
        ("help", "使用方法"),
        ("status", "查看时间线"),
        ("credits", "查看积分"),
        ("export", "渲染并发送 1080p MP4"),
        ("new", "开始新项目"),
        ("projects", "你的项目：在项目间切换"),
        ("rename", "重命名当前项目"),
        ("cancel", "停止当前请求"),
        ("open", "在浏览器中打开项目"),
        ("login", "使用你自己的 NemoVideo 账户"),
        ("logout", "停止使用你自己的账户"),
    ],
}


async def register_commands(bot: Bot) -> None:
    for lang, commands in COMMANDS.items():
        language = None if lang == "en" else lang
        menu = [BotCommand(name, description) for name, description in commands]
        await bot.set_my_commands(menu, language_code=language)
        await bot.set_my_commands(menu, scope=BotCommandScopeAllPrivateChats(), language_code=language)
        group_menu = [c for c in menu if c.command not in PRIVATE_ONLY]
        await bot.set_my_commands(group_menu, scope=BotCommandScopeAllGroupChats(), language_code=language)


async def register_menu_button(bot: Bot, studio_url: str | None) -> None:
    """The private chats' menu button: the studio (MINI_APP_URL), or the command list without it.
    Telegram's menu button has one label for every language."""
    button = MenuButtonWebApp("🎛 Studio", WebAppInfo(studio_url)) if studio_url else MenuButtonCommands()
    await bot.set_chat_menu_button(menu_button=button)
