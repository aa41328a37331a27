"""Generate the example pipeline's deterministic sample data: users.csv and events.csv."""

from __future__ import annotations

import csv
import random
from datetime import datetime, timedelta
from pathlib import Path

SEED = 20261121
USERS = 1200
FIRST_SIGNUP = datetime(2026, 9, 7)  # a Monday, so weeks line up
SIGNUP_DAYS = 56  # eight weeks
SOURCES = {"organic": 0.35, "google_ads": 0.25, "facebook_ads": 0.2, "referral": 0.12, "tiktok": 0.08}
DEVICES = {"ios": 0.4, "android": 0.35, "web": 0.25}
COUNTRIES = {"DE": 0.4, "AT": 0.15, "CH": 0.15, "FR": 0.15, "NL": 0.15}
# Chance of reaching each next step, by source: referrals convert best, paid social worst.
PROGRESS = {
    "organic": (0.7, 0.5, 0.45),
    "google_ads": (0.6, 0.4, 0.35),
    "facebook_ads": (0.5, 0.3, 0.25),
    "referral": (0.85, 0.65, 0.6),
    "tiktok": (0.45, 0.25, 0.2),
}
FUNNEL = ("profile_completed", "lesson_booked", "first_payment")


def pick(rng: random.Random, weights: dict[str, float]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def messy(rng: random.Random, value: str) -> str:
    """Raw exports are inconsistent: case and stray spaces vary."""
    roll = rng.random()
    if roll < 0.1:
        return value.upper()
    if roll < 0.2:
        return f" {value} "
    if roll < 0.25 and value == "ios":
        return "iOS"
    return value


def generate(folder: Path) -> None:
    rng = random.Random(SEED)
    users: list[list[str]] = []
    events: list[list[str]] = []
    event_id = 0

    def event(user_id: str, kind: str, when: datetime) -> None:
        nonlocal event_id
        event_id += 1
        events.append([f"e{event_id:06d}", user_id, kind, when.strftime("%Y-%m-%d %H:%M:%S")])

    for number in range(1, USERS + 1):
        user_id = f"u{number:05d}"
        signed_up = FIRST_SIGNUP + timedelta(seconds=rng.randrange(SIGNUP_DAYS * 86400))
        source = pick(rng, SOURCES)
        device = pick(rng, DEVICES)
        country = pick(rng, COUNTRIES)
        raw_country = "" if rng.random() < 0.03 else messy(rng, country).lower()
        row = [
            user_id,
            signed_up.strftime("%Y-%m-%d %H:%M:%S"),
            messy(rng, source),
            raw_country,
            messy(rng, device),
        ]
        users.append(row)
        if rng.random() < 0.02:
            # The export sometimes repeats a user, a little later; the earliest sign-up counts.
            later = signed_up + timedelta(minutes=5)
            users.append([user_id, later.strftime("%Y-%m-%d %H:%M:%S"), *row[2:]])
        event(user_id, "signup", signed_up)
        when = signed_up
        for step, chance in zip(FUNNEL, PROGRESS[source], strict=True):
            if rng.random() >= chance:
                break
            # Browsing between funnel steps makes several sessions per user.
            for _ in range(rng.randrange(3)):
                when += timedelta(minutes=rng.randrange(1, 20))
                event(user_id, "page_view", when)
            when += timedelta(minutes=rng.randrange(5, 60 * 24 * 3))
            event(user_id, step, when)
            if rng.random() < 0.03:
                events.append(list(events[-1]))  # an at-least-once delivery duplicate
    users.append(["", "2026-09-10 10:00:00", "organic", "de", "web"])  # no id: dropped
    event(f"u{USERS + 500:05d}", "signup", FIRST_SIGNUP)  # unknown user: dropped
    event("u00001", "test_event", FIRST_SIGNUP)  # unknown event type: dropped
    rng.shuffle(events)

    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "users.csv").open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["user_id", "signed_up_at", "signup_source", "country", "device"])
        writer.writerows(users)
    with (folder / "events.csv").open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["event_id", "user_id", "event_type", "event_time"])
        writer.writerows(events)


if __name__ == "__main__":
    generate(Path(__file__).parent)
