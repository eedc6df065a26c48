-- Optional TOTP two-factor sign-in: the base32 secret of a customer's authenticator.
ALTER TABLE customers ADD COLUMN totp_secret TEXT;
