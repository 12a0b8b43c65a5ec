"""Reads lead summaries from running workers and merges them into one funnel report.

Each worker serves the summaries of its active partitions on `GET /funnel/leads` (JSON lines, one
`core.report.LeadSummary` per line). A lead lives on one partition, so the report of the whole deployment is
`core.report.funnel_report` over the summaries of every worker: that is what `merged_report` computes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

import aiohttp
from pydantic import TypeAdapter, ValidationError

from leadflow.core.report import SUMMARY_ADAPTER, LeadSummary, funnel_report
from leadflow.schemas.policy import Policy
from leadflow.schemas.visits import VISITS_ADAPTER, SiteVisits

SUMMARIES_PATH = "/funnel/leads"
VISITS_PATH = "/visits"
DEFAULT_TIMEOUT_S = 60.0
Line = TypeVar("Line")


class ReportSourceError(RuntimeError):
    """A worker's summaries could not be read; the message names the address and what to do about it."""

    def __init__(self, url: str, problem: str, fix: str) -> None:
        self.url = url
        super().__init__(f"{url}: {problem}; {fix}")


def worker_url(url: str, path: str = SUMMARIES_PATH) -> str:
    """An address of a worker: `path` under its web address (http://host:port), or the full address given."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ReportSourceError(
            url, "not an http(s) address", "give the worker's web address, e.g. http://127.0.0.1:6066"
        )
    base = parts.path.rstrip("/")
    for known in (SUMMARIES_PATH, VISITS_PATH):
        base = base.removesuffix(known)
    return parts._replace(path=base + path, query="", fragment="").geturl()


def summaries_url(url: str) -> str:
    """The summaries address of a worker: its web address (http://host:port) or the full /funnel/leads one."""
    return worker_url(url, SUMMARIES_PATH)


def parse_lines(url: str, body: bytes, adapter: TypeAdapter[Line], what: str) -> list[Line]:
    """JSON lines of `what`; a bad line raises with its number and the first problem."""
    parsed = []
    for number, line in enumerate(body.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            parsed.append(adapter.validate_json(line))
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "(line)"
            raise ReportSourceError(
                url,
                f"line {number} is not {what} ({where}: {first['msg']})",
                "check that the address is a leadflow worker of the same version as this command",
            ) from None
    return parsed


def parse_summaries(url: str, body: bytes) -> list[LeadSummary]:
    return parse_lines(url, body, SUMMARY_ADAPTER, "a lead summary")


async def fetch_body(address: str, timeout_s: float) -> bytes:
    """GET one worker address; raises `ReportSourceError` naming the address and the fix when the worker cannot
    be reached, does not answer within `timeout_s`, or answers with another status than 200."""
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as session,
            session.get(address) as response,
        ):
            body = await response.read()
            status, reason = response.status, response.reason
    except TimeoutError:
        raise ReportSourceError(
            address,
            f"no answer within {timeout_s:g} s",
            "the worker may be busy recovering its table; try again, or raise the timeout",
        ) from None
    except aiohttp.ClientConnectionError as error:
        raise ReportSourceError(
            address,
            f"cannot connect ({error})",
            "check that the worker runs and that --worker names its web host and port (LEADFLOW_WEB_PORT, "
            "6066 by default)",
        ) from None
    except aiohttp.ClientError as error:
        raise ReportSourceError(address, f"request failed ({error})", "check the address") from None
    if status != 200:
        raise ReportSourceError(
            address,
            f"HTTP {status} {reason or ''}".rstrip(),
            "check that the address is a leadflow worker (one that serves /funnel/leads)",
        )
    return body


async def fetch_summaries(url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> list[LeadSummary]:
    """The lead summaries one worker serves for its active partitions.

    `url` is the worker's web address (`http://127.0.0.1:6066`, `LEADFLOW_WEB_PORT`) or its full
    `/funnel/leads` address. Raises `ReportSourceError` (see `fetch_body`), or when the answer is not summaries.
    """
    address = summaries_url(url)
    return parse_summaries(address, await fetch_body(address, timeout_s))


async def fetch_visits(url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> list[SiteVisits]:
    """The site-visits reports one worker holds for its active partitions (`GET /visits`)."""
    address = worker_url(url, VISITS_PATH)
    return parse_lines(address, await fetch_body(address, timeout_s), VISITS_ADAPTER, "a site-visits report")


async def merged_report(
    urls: Iterable[str], policy: Policy, now: datetime, *, timeout_s: float = DEFAULT_TIMEOUT_S
) -> dict[str, Any]:
    """The funnel report over every worker's leads (fetched concurrently): the same function and shape as the
    live `/funnel` view of one worker and the offline replay. Give every worker of the consumer group, or the
    report covers only the partitions of those given. Raises the first `ReportSourceError`."""
    fetched = await asyncio.gather(*(fetch_summaries(url, timeout_s=timeout_s) for url in urls))
    return funnel_report((summary for summaries in fetched for summary in summaries), policy, now)
