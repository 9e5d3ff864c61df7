"""The naive baseline for bench_load.py: a page of python-telegram-bot as a tutorial would write it.

The default ApplicationBuilder (updates one at a time, no rate limiter), one handler, and a new HTTP
client for every update. It answers "credits" the way nemo-video-bot does (an anonymous token,
then the balance), so the two can be compared on the same burst.
"""

from __future__ import annotations

import os
import uuid

import httpx
from telegram import Update
from telegram.ext import ApplicationBuilder, ContextTypes, MessageHandler, filters

NEMO = os.environ["NEMO_API_BASE"]
HEADERS = {"X-Skill-Source": "maker-online-free", "X-Skill-Version": "1.0.0", "X-Skill-Platform": "unknown"}


async def on_text(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    async with httpx.AsyncClient(base_url=NEMO, headers=HEADERS) as http:
        answer = await http.post("/api/auth/anonymous-token", headers={"X-Client-Id": str(uuid.uuid4())})
        token = answer.json()["data"]["token"]
        answer = await http.get("/api/credits/balance/simple", headers={"Authorization": f"Bearer {token}"})
        balance = answer.json()["data"]
    if update.effective_message is not None:
        await update.effective_message.reply_text(f"Credits: {balance['available']} available")


def main() -> None:
    application = (
        ApplicationBuilder()
        .token(os.environ["TELEGRAM_BOT_TOKEN"])
        .base_url(os.environ["TELEGRAM_BASE_URL"])
        .build()
    )
    application.add_handler(MessageHandler(filters.TEXT, on_text))
    application.run_polling()


if __name__ == "__main__":
    main()
