//! Issue 11 (hardening): see the module owner.
