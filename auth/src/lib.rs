//! tandem-auth: the one JWT verifier of design.md §9, shared by the gateway and the
//! participant's Ledger API (keys from PEM files or a JWKS URL, the three Daml token formats).
