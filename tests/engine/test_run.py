"""The engine step's own checks, without an engine: they fail when they should.

    python3 -m unittest discover tests/engine
"""

import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run  # noqa: E402


class Checks(unittest.TestCase):
    def test_expect_fails_on_a_different_value(self):
        run.expect("same", 1, 1)
        with self.assertRaises(run.Failed):
            run.expect("different", {"a"}, {"b"})

    def test_eventually_gives_up_at_its_deadline(self):
        with self.assertRaises(run.Failed):
            run.eventually("never", lambda: False, timeout=0.3, every=0.05)
        answers = iter([None, False, "yes"])
        self.assertEqual(run.eventually("third time", lambda: next(answers), timeout=5, every=0.01), "yes")

    def test_eventually_keeps_polling_through_connection_errors(self):
        answers = iter([ConnectionRefusedError(), "up"])

        def probe():
            answer = next(answers)
            if isinstance(answer, Exception):
                raise answer
            return answer

        self.assertEqual(run.eventually("up", probe, timeout=5, every=0.01), "up")


class Dockerfile(unittest.TestCase):
    """dockerRun.py's runtime stage, which the docker mode falls back to."""

    def test_the_runtime_stage_takes_the_binary_from_the_context(self):
        stage = run.dockerRun.runtime_stage_dockerfile()
        self.assertTrue(stage.startswith(f"FROM {run.BASE_IMAGE}"))
        self.assertIn("COPY causalkv /usr/local/bin/causalkv", stage)
        self.assertNotIn("--from=builder", stage)
        self.assertIn("HEALTHCHECK", stage)

    def test_a_dockerfile_without_the_expected_copy_is_refused(self):
        text = "FROM rust AS builder\nFROM debian:bookworm-slim\nCOPY --from=builder /x /usr/local/bin/causalkv\n"
        with self.assertRaises(run.dockerRun.Fail):
            run.dockerRun.runtime_stage_dockerfile(text)
        with self.assertRaises(run.dockerRun.Fail):
            run.dockerRun.runtime_stage_dockerfile("FROM alpine\n")


class Iptables(unittest.TestCase):
    def test_tables_dockerd_writes_to_are_emptied_when_they_were_not_there(self):
        text = run.restorable("")
        self.assertIn("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n", text)
        self.assertIn("*nat\n", text)

    def test_saved_tables_are_restored_as_they_were(self):
        saved = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -j ACCEPT\nCOMMIT\n"
        text = run.restorable(saved)
        self.assertTrue(text.startswith(saved))
        self.assertEqual(text.count("*filter\n"), 1)
        self.assertIn("*nat\n", text)


if __name__ == "__main__":
    unittest.main()
