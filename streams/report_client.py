"""Reads lead summaries from running workers and merges them into one funnel report.

Each worker serves the summaries of its active partitions on `GET /funnel/leads` (JSON lines, one
`core.report.LeadSummary` per line). A lead lives on one partition, so the report of the whole deployment is
`core.report.funnel_report` over the summaries of every worker: that is what `merged_report` computes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from pydantic import ValidationError

from core.report import SUMMARY_ADAPTER, LeadSummary, funnel_report
from schemas.policy import Policy

SUMMARIES_PATH = "/funnel/leads"
DEFAULT_TIMEOUT_S = 60.0


class ReportSourceError(RuntimeError):
    """A worker's summaries could not be read; the message names the address and what to do about it."""

    def __init__(self, url: str, problem: str, fix: str) -> None:
        self.url = url
        super().__init__(f"{url}: {problem}; {fix}")


def summaries_url(url: str) -> str:
    """The summaries address of a worker: its web address (http://host:port) or the full /funnel/leads one."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ReportSourceError(
            url, "not an http(s) address", "give the worker's web address, e.g. http://127.0.0.1:6066"
        )
    path = parts.path.rstrip("/")
    if not path.endswith(SUMMARIES_PATH):
        path += SUMMARIES_PATH
    return parts._replace(path=path, query="", fragment="").geturl()


def parse_summaries(url: str, body: bytes) -> list[LeadSummary]:
    """JSON lines of summaries; a bad line raises with its number and the first problem."""
    summaries = []
    for number, line in enumerate(body.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            summaries.append(SUMMARY_ADAPTER.validate_json(line))
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "(line)"
            raise ReportSourceError(
                url,
                f"line {number} is not a lead summary ({where}: {first['msg']})",
                "check that the address is a leadflow worker of the same version as this command",
            ) from None
    return summaries


async def fetch_summaries(url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> list[LeadSummary]:
    """The lead summaries one worker serves for its active partitions.

    `url` is the worker's web address (`http://127.0.0.1:6066`, `LEADFLOW_WEB_PORT`) or its full
    `/funnel/leads` address. Raises `ReportSourceError` naming the address and the fix when the worker cannot be
    reached, does not answer within `timeout_s`, answers with another status than 200, or sends something
    that is not summaries.
    """
    address = summaries_url(url)
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
    return parse_summaries(address, body)


async def merged_report(
    urls: Iterable[str], policy: Policy, now: datetime, *, timeout_s: float = DEFAULT_TIMEOUT_S
) -> dict[str, Any]:
    """The funnel report over every worker's leads (fetched concurrently): the same function and shape as the
    live `/funnel` view of one worker and the offline replay. Give every worker of the consumer group, or the
    report covers only the partitions of those given. Raises the first `ReportSourceError`."""
    fetched = await asyncio.gather(*(fetch_summaries(url, timeout_s=timeout_s) for url in urls))
    return funnel_report((summary for summaries in fetched for summary in summaries), policy, now)
