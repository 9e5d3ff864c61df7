"""Every button's action, named once: what `act:<action>` under a message asks the bot to do."""

from __future__ import annotations

import enum


class Action(enum.StrEnum):
    EXPORT = "export"
    TIMELINE = "status"  # show the timeline (as /status)
    RETRY = "retry"  # an export that failed, tried again
    STOP = "stop"  # under a running turn's reply: the same as /cancel
    NEW_PROJECT = "new"  # under /projects: the same as /new
    # The quick actions: each a chat turn with a clear instruction (texts `do_<action>`)
    RATIO_9_16 = "ratio_9_16"
    RATIO_16_9 = "ratio_16_9"
    RATIO_1_1 = "ratio_1_1"
    MUSIC = "music"
    TITLE = "title"
    SHORTER = "shorter"
    LONGER = "longer"


# What people ask for most, one tap each (under the timeline and a turn's last reply). In this order
# the keyboard is two rows of four: the aspect ratios and Export, then the edits.
QUICK_ACTIONS: tuple[Action, ...] = (
    Action.RATIO_9_16,
    Action.RATIO_16_9,
    Action.RATIO_1_1,
    Action.EXPORT,
    Action.MUSIC,
    Action.TITLE,
    Action.SHORTER,
    Action.LONGER,
)
PROJECT = "project:"  # `project:<id>`: a button under /projects that makes that project current
INSTRUCTED = frozenset(QUICK_ACTIONS) - {Action.EXPORT}  # the actions that are an instruction to the agent
