"""The account decisions, the vault, the words about accounts, and the skill's render and turn rules,
as pure functions: no server."""

from __future__ import annotations

import pytest

from bot.chat.alerts import Alert, alerts_for
from bot.chat.kit import Standing, browser_link, error_text
from bot.chat.projects import OperatorTokenRejected, PersonalTokenRefused, TrialsUnavailable
from bot.chat.renders import restartable
from bot.core.accounts import (
    AccountKind,
    Vault,
    account_label,
    chat_of,
    choose,
    person_of,
    project_owner,
    session_fits,
    tokens_in,
)
from bot.core.agent_text import temporary_issue
from bot.nemo.errors import (
    BackendRejected,
    BackendUnavailable,
    ExportNotAllowed,
    OutOfCredits,
    RateLimited,
    TokenExpired,
)

KEY = "k" * 40


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("here: nmv_usr_1a2b3c4d", ["nmv_usr_1a2b3c4d"]),
        ("/login nmv_usr_AbC-_9", ["nmv_usr_AbC-_9"]),
        ("two nmv_usr_a and nmv_usr_b", ["nmv_usr_a", "nmv_usr_b"]),
        ("nmv_usr_", []),  # the prefix alone holds nothing
        ("make a video about nmv tokens", []),
        (None, []),
    ],
)
def test_token_shaped_text_is_found(text: str | None, found: list[str]) -> None:
    assert tokens_in(text) == found


@pytest.mark.parametrize(
    ("key", "owner"),
    [
        ("123", 123),  # a private chat is its person's
        ("123:7", 123),  # a topic of a private chat (Bot API 9.4)
        ("-100555", None),  # a group's shared project
        ("-100555:9", None),  # a forum topic's shared project
        ("-100555:u42", 42),  # a member's own project in a per-user group
        ("-100555:9:u42", 42),
    ],
)
def test_a_project_belongs_to_its_person_or_to_nobody(key: str, owner: int | None) -> None:
    assert project_owner(key) == owner


@pytest.mark.parametrize(
    ("linked", "operator", "kind"),
    [
        (True, True, AccountKind.PERSONAL),  # a person's own account wins over the shared one
        (True, False, AccountKind.PERSONAL),
        (False, True, AccountKind.OPERATOR),
        (False, False, AccountKind.TRIAL),
    ],
)
def test_which_account_a_project_runs_on(linked: bool, operator: bool, kind: AccountKind) -> None:
    assert choose(linked=linked, operator=operator) is kind


@pytest.mark.parametrize(
    ("recorded", "label", "fits"),
    [
        ("", "trial", True),  # records from before accounts were noted go on as they were
        ("", "operator", True),
        ("", "personal:7", False),  # but a personal account never takes over a trial's session
        ("trial", "personal:7", False),  # logging in starts a project on one's own account
        ("personal:7", "trial", False),  # logging out leaves it there
        ("personal:7", "personal:8", False),  # another person's account is never reused
        ("personal:7", "personal:7", True),
        ("operator", "operator", True),
    ],
)
def test_a_session_serves_only_the_account_it_was_made_on(recorded: str, label: str, fits: bool) -> None:
    assert session_fits(recorded, label) is fits


def test_labels_name_a_personal_accounts_owner() -> None:
    assert account_label(AccountKind.PERSONAL, 7) == "personal:7"
    assert account_label(AccountKind.TRIAL, 7) == "trial"


def test_the_vault_opens_only_what_it_sealed_for_the_same_person() -> None:
    vault = Vault(KEY)
    sealed = vault.seal(person_of(7), "nmv_usr_secret")
    assert "nmv_usr" not in sealed and "secret" not in sealed
    assert vault.open(person_of(7), sealed) == "nmv_usr_secret"
    assert vault.seal(person_of(7), "nmv_usr_secret") != sealed  # a fresh nonce each time
    assert vault.open(person_of(8), sealed) is None  # copied to another person's key: useless
    assert vault.open(chat_of("7"), sealed) is None  # or to a chat's
    assert Vault("x" * 40).open(person_of(7), sealed) is None  # another key
    assert vault.open(person_of(7), "not-base64!") is None
    with pytest.raises(ValueError, match="32"):
        Vault("short")


@pytest.mark.parametrize(
    ("available", "due", "over"),
    [
        (0, Alert.EMPTY, ()),
        (-5, Alert.EMPTY, ()),
        (100, Alert.LOW, (Alert.EMPTY,)),
        (500, None, (Alert.EMPTY, Alert.LOW)),
        (10_000, None, (Alert.EMPTY, Alert.LOW)),
    ],
)
def test_balance_alerts(available: float, due: Alert | None, over: tuple[Alert, ...]) -> None:
    assert alerts_for(available, 500) == (due, over)


def test_no_low_warning_when_it_is_off() -> None:
    assert alerts_for(1, 0) == (None, (Alert.EMPTY, Alert.LOW))


def standing(account: AccountKind, *, can_login: bool = True, private: bool = True) -> Standing:
    return Standing(
        account=account,
        user_id="anon_1",
        can_login=can_login,
        private=private,
        login_link="https://t.me/nemo_test_bot?start=login",
        register_url="https://nemovideo.com/register",
        site="https://nemovideo.com",
    )


def test_no_trial_offers_the_ways_forward_this_bot_has() -> None:
    text = error_text(TrialsUnavailable(), "en", standing(AccountKind.TRIAL))
    assert "free trials are used up" in text and "/login here" in text and "operator" in text
    group = error_text(TrialsUnavailable(), "en", standing(AccountKind.TRIAL, private=False))
    assert "private chat" in group and "start=login" in group
    closed = error_text(TrialsUnavailable(), "en", standing(AccountKind.TRIAL, can_login=False))
    assert "/login" not in closed and "operator" in closed
    chinese = error_text(TrialsUnavailable(), "zh", standing(AccountKind.TRIAL))
    assert "试用" in chinese and "/login" in chinese and "free" not in chinese


@pytest.mark.parametrize(
    ("err", "account", "says", "never"),
    [
        (OutOfCredits(), AccountKind.TRIAL, "register?bind=anon_1", ""),
        (OutOfCredits(), AccountKind.OPERATOR, "shared credits are used up", "register"),
        (OutOfCredits(), AccountKind.PERSONAL, "Top up", "register"),
        (ExportNotAllowed(), AccountKind.TRIAL, "register?bind=anon_1", ""),
        (ExportNotAllowed(), AccountKind.OPERATOR, "shared account", "register"),
        (ExportNotAllowed(), AccountKind.PERSONAL, "Upgrade your plan", "register"),
        (PersonalTokenRefused(), AccountKind.PERSONAL, "send /login again", "trial"),
        (OperatorTokenRejected(), AccountKind.OPERATOR, "operator", "register"),
        (RateLimited(), AccountKind.TRIAL, "busy", ""),
    ],
)
def test_failures_are_told_by_the_account_they_happened_on(
    err: Exception, account: AccountKind, says: str, never: str
) -> None:
    text = error_text(err, "en", standing(account))
    assert says in text
    if never:
        assert never not in text


def test_a_refused_personal_token_in_a_group_points_to_the_private_chat() -> None:
    text = error_text(PersonalTokenRefused(), "en", standing(AccountKind.PERSONAL, private=False))
    assert "private chat" in text and "start=login" in text


def test_the_browser_link_carries_the_claim_token_only() -> None:
    assert (
        browser_link("https://nemovideo.com", "clm_a b")
        == "https://nemovideo.com/workspace/claim?ct=clm_a%20b"
    )


@pytest.mark.parametrize(
    ("err", "again"),
    [
        (BackendUnavailable("503"), True),
        (BackendUnavailable("timed out"), True),
        (BackendRejected("code 5000", code=5000), True),
        (ExportNotAllowed(), False),
        (OutOfCredits(), False),
        (TokenExpired(), False),
        (TrialsUnavailable(), False),
        (RuntimeError("bug"), False),
    ],
)
def test_which_failed_render_starts_are_started_again(err: Exception, again: bool) -> None:
    assert restartable(err) is again


@pytest.mark.parametrize(
    ("text", "issue"),
    [
        ("I encountered a temporary issue. Please try again.", True),
        ("  i encountered a temporary issue while saving", True),
        ("I've encountered a temporary issue", True),
        ("我遇到了一个临时问题，请稍后再试。", True),
        ("Added music. I encountered a temporary issue earlier but it is fixed.", False),
        ("Your clip is on the timeline.", False),
    ],
)
def test_the_agents_temporary_issue_line_is_recognised(text: str, issue: bool) -> None:
    assert temporary_issue(text) is issue
