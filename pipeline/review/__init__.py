"""The review console for moderators: web app, accounts, queue, decisions and exports."""
