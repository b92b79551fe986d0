# /etc/cairn/b2.env.tpl: `op inject -i` replaces each {{ op://... }} with the field's
# value. No secret in this file; it may be world-readable.
B2_ACCOUNT_ID={{ op://Homelab/Backblaze - javiersc - Application key/keyID }}
B2_ACCOUNT_KEY={{ op://Homelab/Backblaze - javiersc - Application key/credential }}
