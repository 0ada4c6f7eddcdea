"""Helpers shared by the data tests."""

import pytest


@pytest.fixture(scope='session')
def autoaugment_outcomes():
    """fn(uint8 image, policy name) -> every image the policy can give:
    each sub-policy with each subset of its ops applied, in policy order
    (four per two-op sub-policy)."""
    from deeplab2.data import autoaugment

    def outcomes(image, policy_name):
        images = []
        for sub_policy in autoaugment.get_policy(policy_name):
            for mask in range(2 ** len(sub_policy)):
                chosen = [op for bit, op in enumerate(sub_policy)
                          if mask >> bit & 1]
                images.append(
                    autoaugment.apply_sub_policy(image, chosen).numpy())
        return images

    return outcomes
