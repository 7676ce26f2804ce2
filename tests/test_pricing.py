"""Prices: the Pricing API through botocore's Stubber (moto has none), a dated cache,
spot price history, the bundled table."""

from __future__ import annotations

import datetime as dt
import json

import botocore.session
import pytest
from botocore.stub import Stubber

from runctl_jupyter.cost.prices import (
    Prices,
    dollars,
    hourly,
    pricing_filters,
    table,
)
from runctl_jupyter.errors import RunctlError

T0 = dt.datetime(2026, 11, 29, 1, 0, tzinfo=dt.timezone.utc).timestamp()


def _client(service: str, region: str = "us-east-1"):
    return botocore.session.get_session().create_client(
        service, region_name=region, aws_access_key_id="x", aws_secret_access_key="y"
    )


def price_list_item(instance_type: str, region: str, usd: str) -> str:
    """One PriceList entry as the Pricing API returns it (a JSON text)."""
    sku = "JRTCKXETXF7DFV3S"
    return json.dumps(
        {
            "product": {
                "productFamily": "Compute Instance",
                "attributes": {
                    "instanceType": instance_type,
                    "regionCode": region,
                    "operatingSystem": "Linux",
                    "tenancy": "Shared",
                    "usagetype": f"BoxUsage:{instance_type}",
                },
                "sku": sku,
            },
            "serviceCode": "AmazonEC2",
            "terms": {
                "OnDemand": {
                    f"{sku}.JRTCKXETXF": {
                        "offerTermCode": "JRTCKXETXF",
                        "sku": sku,
                        "effectiveDate": "2026-11-01T00:00:00Z",
                        "priceDimensions": {
                            f"{sku}.JRTCKXETXF.6YS6EN2CT7": {
                                "unit": "Hrs",
                                "endRange": "Inf",
                                "beginRange": "0",
                                "description": f"${usd} per On Demand Linux {instance_type} Instance Hour",
                                "pricePerUnit": {"USD": usd},
                            }
                        },
                    }
                }
            },
            "version": "20261101000000",
            "publicationDate": "2026-11-01T00:00:00Z",
        }
    )


def expect_products(stub: Stubber, instance_type: str, region: str, usd: str) -> None:
    stub.add_response(
        "get_products",
        {"FormatVersion": "aws_v1", "PriceList": [price_list_item(instance_type, region, usd)]},
        {
            "ServiceCode": "AmazonEC2",
            "Filters": pricing_filters(instance_type, region),
            "FormatVersion": "aws_v1",
            "MaxResults": 10,
        },
    )


class Clock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_prices_are_shown_to_a_tenth_of_a_cent_and_totals_to_the_cent():
    assert hourly(1.006) == "$1.006/h" and hourly(0.4123) == "$0.412/h"
    assert dollars(0.3149) == "$0.31" and dollars(12.5) == "$12.50"


def test_on_demand_comes_from_the_pricing_api_then_the_dated_cache(tmp_path):
    pricing = _client("pricing")
    clock = Clock()
    with Stubber(pricing) as stub:
        expect_products(stub, "g5.xlarge", "eu-west-1", "1.1230000000")
        prices = Prices(tmp_path, pricing=pricing, clock=clock)
        first = prices.on_demand("g5.xlarge", "eu-west-1")
        assert first.usd_per_hour == 1.123 and first.source == "AWS Pricing API (2026-11-29)"
        # the same day, another process: the cache answers, no call (the stub has none left)
        clock.t += 6 * 3600
        again = Prices(tmp_path, pricing=pricing, clock=clock).on_demand("g5.xlarge", "eu-west-1")
        assert again.usd_per_hour == 1.123 and again.source == "cache (AWS Pricing API, 2026-11-29)"
        stub.assert_no_pending_responses()
    cached = json.loads((tmp_path / "cache" / "prices.json").read_text())
    assert cached["on-demand"]["eu-west-1/g5.xlarge"]["day"] == "2026-11-29"


def test_the_next_day_asks_the_pricing_api_once_again(tmp_path):
    pricing = _client("pricing")
    clock = Clock()
    with Stubber(pricing) as stub:
        expect_products(stub, "g5.xlarge", "us-east-1", "1.0060000000")
        expect_products(stub, "g5.xlarge", "us-east-1", "0.9990000000")
        prices = Prices(tmp_path, pricing=pricing, clock=clock)
        assert prices.on_demand("g5.xlarge", "us-east-1").usd_per_hour == 1.006
        assert prices.on_demand("g5.xlarge", "us-east-1").usd_per_hour == 1.006
        clock.t += 86400
        assert prices.on_demand("g5.xlarge", "us-east-1").usd_per_hour == 0.999
    assert prices.calls["pricing"] == 2


def test_no_pricing_permission_falls_back_to_the_bundled_table_for_the_day(tmp_path):
    pricing = _client("pricing")
    with Stubber(pricing) as stub:
        stub.add_client_error(
            "get_products", "AccessDeniedException", "User is not authorized", 400
        )
        prices = Prices(tmp_path, pricing=pricing, clock=Clock())
        p = prices.on_demand("g4dn.xlarge", "us-east-1")
        assert p.usd_per_hour == 0.526
        assert p.source == f"bundled table (AWS published prices, {table()['date']})"
        assert "AccessDeniedException" in p.note
        again = prices.on_demand("g4dn.xlarge", "us-east-1")  # no second call that day
        assert again.usd_per_hour == 0.526 and "unavailable today" in again.note
    assert prices.calls["pricing"] == 1


def test_offline_uses_the_bundled_table_without_any_call(tmp_path):
    prices = Prices(tmp_path, pricing=object(), ec2=object())
    p = prices.on_demand("p3.2xlarge", "us-east-1", offline=True)
    assert (p.usd_per_hour, p.kind) == (3.06, "on-demand")
    assert prices.calls == {"pricing": 0, "spot": 0}
    assert "$3.060/h" in p.describe() and table()["date"] in p.describe()


def test_an_unknown_type_offline_is_a_one_line_error_that_says_what_to_do(tmp_path):
    with pytest.raises(RunctlError) as err:
        Prices(tmp_path).on_demand("g5.xlarg", "us-east-1", offline=True)
    assert "\n" not in str(err.value) and "check the type" in str(err.value)


def test_the_bundled_table_covers_the_common_types_with_source_and_date():
    t = table()
    assert t["date"] and "aws.amazon.com" in t["source"]
    for family in ("g4dn", "g5", "g6", "p3", "p4d", "p5", "t3", "c5", "m5"):
        assert any(k.startswith(family + ".") for k in t["on_demand"]["us-east-1"]), family
    assert {"us-east-1", "us-west-2", "eu-west-1"} <= set(t["on_demand"])


def spot_answer(*rows: tuple[str, str, int]) -> dict:
    return {
        "SpotPriceHistory": [
            {
                "AvailabilityZone": az,
                "InstanceType": "g5.xlarge",
                "ProductDescription": "Linux/UNIX",
                "SpotPrice": price,
                "Timestamp": dt.datetime(2026, 11, 29, 0, minute, tzinfo=dt.timezone.utc),
            }
            for az, price, minute in rows
        ]
    }


def test_spot_uses_the_newest_price_of_the_zone_in_use(tmp_path):
    ec2 = _client("ec2")
    with Stubber(ec2) as stub:
        stub.add_response(
            "describe_spot_price_history",
            spot_answer(("us-east-1b", "0.401000", 10), ("us-east-1b", "0.423500", 50)),
        )
        p = Prices(tmp_path, ec2=ec2, clock=Clock()).spot("g5.xlarge", "us-east-1", "us-east-1b")
    assert (p.usd_per_hour, p.zone, p.kind) == (0.4235, "us-east-1b", "spot")
    assert p.source.startswith("EC2 spot price history")


def test_spot_without_a_zone_is_the_cheapest_zone_and_is_cached_an_hour(tmp_path):
    ec2 = _client("ec2")
    clock = Clock()
    with Stubber(ec2) as stub:
        stub.add_response(
            "describe_spot_price_history",
            spot_answer(("us-east-1a", "0.512300", 5), ("us-east-1c", "0.387100", 5)),
        )
        prices = Prices(tmp_path, ec2=ec2, clock=clock)
        assert prices.spot("g5.xlarge", "us-east-1").zone == "us-east-1c"
        clock.t += 1800
        cached = prices.spot("g5.xlarge", "us-east-1")
    assert cached.usd_per_hour == 0.3871 and cached.source.startswith("cache")
    assert prices.calls["spot"] == 1


def test_spot_offline_says_the_on_demand_price_is_its_upper_bound(tmp_path):
    p = Prices(tmp_path).spot("g5.xlarge", "us-east-1", offline=True)
    assert p.usd_per_hour == 1.006 and "upper bound" in p.note


def test_ebs_is_priced_per_gb_month_by_region(tmp_path):
    prices = Prices(tmp_path)
    assert prices.ebs("us-east-1")[0] == 0.08
    assert prices.ebs("eu-west-1")[0] == 0.088
    usd, source = prices.ebs("ap-south-1")
    assert usd == 0.08 and "us-east-1's price" in source
