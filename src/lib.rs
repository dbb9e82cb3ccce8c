//! anyaccel
