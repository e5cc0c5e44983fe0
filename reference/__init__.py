"""Float64 references of each kernel's intended math."""
