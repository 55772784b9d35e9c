"""The four payment participants: authorization, risk, PCI compliance and capture."""

from participants.payments.books import Books, BooksReport, audit
from participants.payments.demo import DemoWorld, FailAt, seed_demo_world
from participants.payments.ledger import AccountSeed, Ledger, MerchantSeed
from participants.payments.services import SERVICES, run_participant

__all__ = [
    "SERVICES",
    "AccountSeed",
    "Books",
    "BooksReport",
    "DemoWorld",
    "FailAt",
    "Ledger",
    "MerchantSeed",
    "audit",
    "run_participant",
    "seed_demo_world",
]
