"""The four skill profiles the bot can run as (from the seed skill documents).

Each profile sets the `X-Skill-Source` header, the greeting, the "try saying" examples and the
upload size limit. Nothing else differs: the backend and the flows are the same.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    source: str
    title: str
    greeting: dict[str, str]
    examples: tuple[str, ...]
    max_upload_mb: int


PROFILES: dict[str, Profile] = {
    "maker-online-free": Profile(
        source="maker-online-free",
        title="Maker Online Free",
        greeting={
            "en": "Share your images or clips and I'll get started on AI video creation. "
            "Or just tell me what you're thinking.",
            "zh": "发送你的图片或视频片段，我来开始 AI 视频创作。也可以直接告诉我你的想法。",
        },
        examples=(
            "create my images or clips",
            "export 1080p MP4",
            "combine these images into a 30-second promo video with music and text",
        ),
        max_upload_mb=500,
    ),
    "maker-free-best": Profile(
        source="maker-free-best",
        title="Maker Free Best",
        greeting={
            "en": "Share your raw footage and I'll get started on AI video creation. "
            "Or just tell me what you're thinking.",
            "zh": "发送你的原始素材，我来开始 AI 视频创作。也可以直接告诉我你的想法。",
        },
        examples=(
            "create my raw footage",
            "export 1080p MP4",
            "make a free video from my clips with music and transitions",
        ),
        max_upload_mb=500,
    ),
    "ai-video-creator-online": Profile(
        source="ai-video-creator-online",
        title="AI Video Creator Online",
        greeting={
            "en": "Share your images or text and I'll get started on AI video creation. "
            "Or just tell me what you're thinking.",
            "zh": "发送你的图片或文字，我来开始 AI 视频创作。也可以直接告诉我你的想法。",
        },
        examples=(
            "create my images or text",
            "export 1080p MP4",
            "turn these images and script into a 60-second promo video with music",
        ),
        max_upload_mb=500,
    ),
    "free-generator-maker": Profile(
        source="free-generator-maker",
        title="Free Generator Maker",
        greeting={
            "en": "Ready when you are. Drop your text or images here or describe what you want to make.",
            "zh": "随时可以开始。发送你的文字或图片，或者描述你想做的视频。",
        },
        examples=(
            "generate a product description and three product photos into a 1080p MP4",
            "generate a 30-second promo video from my text and images for free",
            "generating videos from text or images without paid software for small business owners",
        ),
        max_upload_mb=200,
    ),
}
