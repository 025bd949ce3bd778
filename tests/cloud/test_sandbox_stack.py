"""The sandbox configuration (PaymentProvider=sandbox: `make cloud`, test stacks) keeps working
beside the real one: a second stack in the same local cloud, a sign-up, a purchase with the
sandbox's test card, the live feed's function answering."""

from __future__ import annotations

import pytest

from tests.cloud.conftest import Cloud, http
from tests.cloud.test_stack import buy

pytestmark = pytest.mark.cloud


def test_the_sandbox_stack_sells_coins_for_the_test_card(sandbox: Cloud) -> None:
    assert http(sandbox.stack.health_url).status == 200
    sandbox.sign_up("sam", "1992-02-02")
    # GIVEN the sandbox's approved test card, WHEN Sam buys 70 coins, THEN they are his
    bought = buy(sandbox, "sam", "coins-70", "sandbox-1", token="tok_visa")
    assert bought["__typename"] == "CoinsPurchased" and bought["wallet"]["coins"] == 70
    # AND its other functions run in this configuration too (under their own roles)
    assert sandbox.invoke("PayoutsFunction", {"limit": 1})["withdrawals"] == []
    assert sandbox.invoke("GiftFeedFanOutFunction", {"Records": []}) == {
        "gifts": 0,
        "ended": 0,
        "dispatched": 0,
    }
    assert sandbox.invoke("GiftFeedPostFunction", {"Records": []}) == {"batchItemFailures": []}
