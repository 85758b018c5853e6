"""`newsletter inbound --file`, the evidence in `subscribers show`, and the rates in `status`, after a real
`send` through an SMTP server that records each message's VERP envelope sender."""

from __future__ import annotations

import email
import email.policy
import json
from pathlib import Path

from click.testing import CliRunner

from newsletter.cli.main import cli
from tests.inbound_support import DOMAIN, INBOUND_FIXTURES, dsn
from tests.mailsink import MailSink
from tests.support import secret_fixture
from tests.test_send import SECRET, add_subscribers, cli_run, make_config

secret = secret_fixture(SECRET)


def test_bounce_and_complaint_by_file_show_up_in_subscribers_show_and_status(tmp_path: Path,
                                                                              sink: MailSink) -> None:
    config = make_config(tmp_path, sink, extra=f'\n[inbound]\ndomain = "{DOMAIN}"\n')
    assert cli_run(config, "fetch")[0] == 0
    emails = add_subscribers(config, 4)
    code, output = cli_run(config, "send")
    assert code == 0, output
    senders = {m.rcpt_tos[0]: m.mail_from for m in sink.messages}
    assert all(s.startswith("bounces+k1-") and s.endswith("@" + DOMAIN) for s in senders.values())
    bounced, complainer = emails[0], emails[1]
    report = tmp_path / "dsn.eml"
    report.write_bytes(dsn(to=senders[bounced], final_recipient=bounced, status="5.1.1"))
    code, output = cli_run(config, "inbound", "--file", str(report), "--rcpt", senders[bounced])
    assert (code, "hard-bounce → applied" in output) == (0, True), output
    token = senders[complainer].partition("+")[2].partition("@")[0]
    arf = tmp_path / "arf.eml"
    arf.write_bytes((INBOUND_FIXTURES / "arf-yahoo.eml").read_bytes().replace(b"REPLACE", token.encode())
                    .replace(b"MESSAGEID", b"<m@example.org>"))
    assert "complaint → applied" in cli_run(config, "inbound", "--file", str(arf))[1]

    # a JMRP report without VERP: our Message-ID (an HMAC only that reader's copy holds) and the same reader named
    named = emails[2]
    (sent_copy,) = [m for m in sink.messages if m.rcpt_tos[0] == named]
    our_id = email.message_from_bytes(sent_copy.data, policy=email.policy.default)["Message-ID"]
    jmrp = tmp_path / "jmrp.eml"
    template = (INBOUND_FIXTURES / "arf-jmrp.eml").read_bytes().replace(b"MESSAGEID", our_id.encode())
    jmrp.write_bytes(template.replace(b"RECIPIENT", b"redacted@hotmail.com"))  # redacted: no reader named
    assert "complaint → unattributed" in cli_run(config, "inbound", "--file", str(jmrp))[1]
    jmrp.write_bytes(template.replace(b"RECIPIENT", emails[3].encode())  # names another reader than its ID's
                     .replace(b"<jmrp-7@", b"<jmrp-6@"))
    assert "complaint → unattributed" in cli_run(config, "inbound", "--file", str(jmrp))[1]
    jmrp.write_bytes(template.replace(b"RECIPIENT", named.encode()).replace(b"<jmrp-7@", b"<jmrp-8@"))
    assert "complaint → applied" in cli_run(config, "inbound", "--file", str(jmrp))[1]
    shown = json.loads(cli_run(config, "subscribers", "show", named, "--json")[1])
    assert (shown["subscriber"]["status"], shown["events"][0]["attributed_by"]) == ("complained", "message-id")
    assert json.loads(cli_run(config, "subscribers", "show", emails[3], "--json")[1])["subscriber"]["status"] == \
        "active"

    code, output = cli_run(config, "subscribers", "show", bounced)
    assert code == 0
    assert "status: bounced" in output
    assert "hard-bounce → bounced [5.1.1] smtp; 550 5.1.1" in output
    assert "by verp" in output
    shown = json.loads(cli_run(config, "subscribers", "show", complainer, "--json")[1])
    assert [(e["kind"], e["action"], e["message_id"]) for e in shown["events"]] == [
        ("complaint", "complained", "<m@example.org>")]

    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes((INBOUND_FIXTURES / "garbage.bin").read_bytes())
    assert "unparseable → quarantined" in cli_run(config, "inbound", "--file", str(garbage))[1]
    listed = cli_run(config, "inbound", "--quarantined")[1]
    assert "via cli: no header lines" in listed
    assert "1 quarantined" in listed
    kept = CliRunner().invoke(cli, ["--config", str(config), "inbound", "--raw", listed.split(":")[0]])
    assert kept.stdout_bytes == garbage.read_bytes()
    assert cli_run(config, "inbound", "--raw", "999")[1].startswith("Error: no quarantined message 999")

    view = json.loads(cli_run(config, "status", "--json")[1])["inbound"]
    (edition,) = view["editions"]
    assert (edition["sent"], edition["bounced"], edition["complained"]) == (4, 1, 2)
    assert (edition["complaint_rate"], edition["over_complaint_line"]) == (0.5, True)
    assert view["last_30_days"] == {"applied": 3, "quarantined": 1, "unattributed": 2}
    text = cli_run(config, "status")[1]
    assert "Gmail's complaint line: 0.3%" in text
    assert "50.00% OVER" in text


def test_inbound_without_a_domain_is_a_one_line_error(tmp_path: Path, sink: MailSink) -> None:
    config = make_config(tmp_path, sink)
    code, output = cli_run(config, "inbound", "--once")
    assert code == 1
    assert output.strip() == "Error: inbound mail is off: set [inbound] domain (the domain bounces are sent to)"
