"""Brevo's transactional e-mail: the body of ``POST /smtp/email`` (double opt-in mail goes out here)."""

from __future__ import annotations

import sib_api_v3_sdk as sib


def smtp_email(
    *,
    sender_email: str,
    sender_name: str,
    to_email: str,
    to_name: str | None,
    subject: str,
    html: str,
    text: str,
    headers: dict[str, str],
) -> sib.SendSmtpEmail:
    # https://developers.brevo.com/reference/sendtransacemail
    return sib.SendSmtpEmail(
        sender=sib.SendSmtpEmailSender(email=sender_email, name=sender_name),
        to=[sib.SendSmtpEmailTo(email=to_email, name=to_name or None)],
        subject=subject,
        html_content=html,
        text_content=text,
        headers=dict(headers),
    )
