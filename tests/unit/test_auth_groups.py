"""The group check every secured operation goes through (dss.auth.check_groups)."""
from __future__ import annotations

import pytest

from dss.auth import check_groups
from dss.errors import DSSError


@pytest.mark.parametrize("required, groups", [(["hca"], ["hca"]), (["hca", "public"], ["public"]),
                                              (["hca"], ["public", "hca"])])
def test_one_group_in_common_admits(required, groups):
    assert check_groups(required, groups) is True


@pytest.mark.parametrize("required, groups", [(["hca"], ["public"]), (["hca"], []), (["hca"], "hca openid"),
                                              ([], ["hca"]), (None, ["hca"])])
def test_anything_else_is_forbidden(required, groups):
    """Including a secured operation that names no group, and scopes that are not the verifier's group list."""
    with pytest.raises(DSSError) as e:
        check_groups(required, groups)
    assert (e.value.status, e.value.code) == (403, "Forbidden")
