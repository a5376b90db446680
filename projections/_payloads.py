"""Payload pieces several event types share.

Every optional field defaults to `UNSET`, so "absent" (leave the column alone) and
`null` (set it NULL) stay different after decoding.
"""

from __future__ import annotations

from msgspec import UNSET, Struct, UnsetType

Text = str | UnsetType | None
Amount = int | float | UnsetType | None


class PostalAddress(Struct, rename="camel"):
    """An address as BitByBit sends it: a customer's addresses, an order's shipping."""

    first_name: Text = UNSET
    last_name: Text = UNSET
    phone: Text = UNSET
    address1: Text = UNSET
    address2: Text = UNSET
    city: Text = UNSET
    province: Text = UNSET
    country: Text = UNSET
    zip: Text = UNSET


class Deleted(Struct):
    """The body of `customer.deleted` and `product.deleted`: the id alone."""

    id: str
