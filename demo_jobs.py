"""Demo jobs for ``make run`` (``horizon up --demo``): small random sleeps and an occasional failure."""

from __future__ import annotations

import random
import time

from horizon import job, progress


@job(queue="emails", tries=2, backoff=1, tags=lambda to: [f"to:{to}"])
def send_email(to: str) -> str:
    time.sleep(random.uniform(0.05, 0.4))
    if random.random() < 0.1:
        raise ConnectionError(f"SMTP server refused {to}")
    return f"sent to {to}"


@job(queue="default", tags=lambda image_id: [f"image:{image_id}"])
def resize_image(image_id: int) -> dict:
    for step in range(1, 5):
        time.sleep(random.uniform(0.05, 0.3))
        progress(step / 4)
    if random.random() < 0.05:
        raise ValueError(f"image {image_id} is corrupt")
    return {"image": image_id, "size": [640, 480]}


@job(queue="default")
def report(kind: str = "daily") -> str:
    time.sleep(random.uniform(0.5, 1.5))
    return f"{kind} report ready"


def dispatch_some(count: int = 3) -> list[str]:
    """Dispatch ``count`` random demo jobs; their ids."""
    ids = []
    for _ in range(count):
        pick = random.random()
        if pick < 0.5:
            ids.append(send_email.dispatch(f"user{random.randint(1, 50)}@example.com"))
        elif pick < 0.95:
            ids.append(resize_image.dispatch(random.randint(1, 10_000)))
        else:
            ids.append(report.dispatch())
    return ids
