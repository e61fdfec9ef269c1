"""Security rules shared by the tests (and by a policy pack, should one be added): see rules.py."""
