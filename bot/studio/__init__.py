"""The studio: a Telegram Mini App that shows a project as a timeline you can touch."""
