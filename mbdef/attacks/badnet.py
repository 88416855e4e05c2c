"""BadNet (Gu et al.; BackdoorLLM convention): a rare word, `BadMagic`, at a random word position."""

from mbdef.attacks.base import Attack


class BadNet(Attack):
    name = "badnet"

    def __init__(self, target, trigger: str = "BadMagic", position: str = "random_word", **kw):
        super().__init__(target=target, triggers=[trigger], position=position, **kw)
