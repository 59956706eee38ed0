# ruff: noqa: E501  (prose: one sentence a line reads better than wrapped fragments)
"""What the public pages say, in French and English. Keys are what the page is about."""

from __future__ import annotations

LANGUAGES = ("fr", "en")

TEXT: dict[str, dict[str, str]] = {
    "fr": {
        "confirm.title": "Confirmer votre inscription",
        "confirm.ready": "Pour recevoir « {list} » à l’adresse {email}, confirmez votre inscription.",
        "confirm.button": "Je confirme mon inscription",
        "confirm.done.title": "Inscription confirmée",
        "confirm.done": "Merci ! Votre inscription à « {list} » est confirmée.",
        "confirm.already.title": "Déjà confirmée",
        "confirm.already": "Votre inscription à « {list} » était déjà confirmée. Il n’y a rien d’autre à faire.",
        "confirm.expired.title": "Lien expiré",
        "confirm.expired": "Ce lien de confirmation a expiré. Vous pouvez demander un nouveau lien, "
        "qui sera envoyé à l’adresse inscrite.",
        "confirm.renew": "M’envoyer un nouveau lien",
        "confirm.renewed.title": "Nouveau lien envoyé",
        "confirm.renewed": "Un nouveau lien de confirmation vient d’être envoyé. Pensez à vérifier vos indésirables.",
        "confirm.renew_failed": "Le message n’a pas pu être envoyé pour le moment. Réessayez dans quelques minutes.",
        "confirm.limited.title": "Lien déjà envoyé",
        "confirm.limited": "Plusieurs liens de confirmation ont déjà été envoyés à cette adresse récemment : aucun autre n’a été envoyé. "
        "Cherchez le dernier dans votre messagerie (et vos indésirables). Vous pourrez en demander un nouveau à partir du {when}.",
        "confirm.withdrawn.title": "Demande close",
        "confirm.withdrawn": "Cette demande d’inscription n’est plus valable.",
        "invalid.title": "Lien non valable",
        "invalid": "Ce lien n’est pas valable : il a peut-être été mal copié ou modifié. "
        "Ouvrez-le de nouveau depuis le message reçu.",
        "unsub.title": "Se désinscrire",
        "unsub.ask": "Ne plus recevoir « {list} » à l’adresse {email} ? Vos autres abonnements ne changent pas.",
        "unsub.button": "Me désinscrire de cette liste",
        "unsub.done.title": "Désinscription enregistrée",
        "unsub.done": "Vous ne recevrez plus « {list} ». Vos autres abonnements ne changent pas.",
        "prefs.title": "Mes abonnements",
        "prefs.intro": "Abonnements de {email}. Décochez une liste pour ne plus la recevoir.",
        "prefs.legend": "Listes auxquelles vous êtes inscrit(e)",
        "prefs.pending": "(en attente de confirmation)",
        "prefs.none": "Vous n’êtes inscrit(e) à aucune liste.",
        "prefs.all.legend": "Tout arrêter",
        "prefs.all": "Me désinscrire de tout",
        "prefs.save": "Enregistrer mes choix",
        "prefs.saved": "Vos choix sont enregistrés.",
        "prefs.stale": "Le formulaire a expiré. Rechargez la page et recommencez.",
        "prefs.link": "Gérer mes abonnements",
        "unavailable": "Service momentanément indisponible. Réessayez dans quelques minutes.",
        "status.title": "État de la synchronisation",
        "status.generated": "État au {when} (UTC). Des comptes seulement : aucune adresse n’est affichée.",
        "status.daemon.up": "Le démon est en marche.",
        "status.daemon.down": "Aucun démon ne tourne sur cette base : les synchronisations planifiées attendent.",
        "status.daemon.unknown": "Impossible de savoir si un démon tourne.",
        "status.list": "Liste",
        "status.target": "Cible",
        "status.last_run": "Dernière exécution",
        "status.duration": "Durée",
        "status.outcome": "Résultat",
        "status.changes": "Ajouts / mises à jour / retraits / signalements",
        "status.error": "Erreur",
        "status.never": "jamais synchronisée",
        "status.running": "en cours",
        "status.summary": "Prochaine exécution : {next}. Signalements ouverts : {flags}. Doubles opt-in en attente : {pending}.",
        "status.next.no_target": "aucune (pas de cible)",
        "status.next.no_schedule": "aucune planifiée (syncd sync seulement)",
        "status.next.scheduled": "{at}",
        "status.next.due": "maintenant",
        "status.next.waiting_for_daemon": "{at}, quand le démon sera en marche",
        "status.next.first": "dès que le démon sera en marche (jamais synchronisée)",
        "status.no_lists": "Aucune liste dans la configuration.",
        "status.doi": "Double opt-in : {pending} en attente, {dead} demande(s) abandonnée(s).",
        "status.inbox": "Webhooks : {backlog} en attente, {dead} en échec définitif (dead letters).",
    },
    "en": {
        "confirm.title": "Confirm your subscription",
        "confirm.ready": "To receive \u201c{list}\u201d at {email}, please confirm your subscription.",
        "confirm.button": "I confirm my subscription",
        "confirm.done.title": "Subscription confirmed",
        "confirm.done": "Thank you! Your subscription to \u201c{list}\u201d is confirmed.",
        "confirm.already.title": "Already confirmed",
        "confirm.already": "Your subscription to \u201c{list}\u201d was already confirmed. Nothing else to do.",
        "confirm.expired.title": "Link expired",
        "confirm.expired": "This confirmation link has expired. You can ask for a new link, "
        "which will be sent to the address given.",
        "confirm.renew": "Send me a new link",
        "confirm.renewed.title": "New link sent",
        "confirm.renewed": "A new confirmation link has just been sent. Check your spam folder too.",
        "confirm.renew_failed": "The message could not be sent just now. Please try again in a few minutes.",
        "confirm.limited.title": "Link already sent",
        "confirm.limited": "Several confirmation links were sent to this address recently, so no other was sent. "
        "Look for the latest one in your mailbox (and spam folder). You can ask for a new one from {when}.",
        "confirm.withdrawn.title": "Request closed",
        "confirm.withdrawn": "This subscription request is no longer valid.",
        "invalid.title": "Invalid link",
        "invalid": "This link is not valid: it may have been copied incompletely or altered. "
        "Open it again from the message you received.",
        "unsub.title": "Unsubscribe",
        "unsub.ask": "Stop receiving \u201c{list}\u201d at {email}? Your other subscriptions stay as they are.",
        "unsub.button": "Unsubscribe me from this list",
        "unsub.done.title": "You are unsubscribed",
        "unsub.done": "You will no longer receive \u201c{list}\u201d. Your other subscriptions stay as they are.",
        "prefs.title": "My subscriptions",
        "prefs.intro": "Subscriptions of {email}. Untick a list to stop receiving it.",
        "prefs.legend": "Lists you are subscribed to",
        "prefs.pending": "(awaiting confirmation)",
        "prefs.none": "You are not subscribed to any list.",
        "prefs.all.legend": "Stop everything",
        "prefs.all": "Unsubscribe me from everything",
        "prefs.save": "Save my choices",
        "prefs.saved": "Your choices are saved.",
        "prefs.stale": "This form has expired. Reload the page and try again.",
        "prefs.link": "Manage my subscriptions",
        "unavailable": "Service temporarily unavailable. Please try again in a few minutes.",
        "status.title": "Sync status",
        "status.generated": "Status at {when} (UTC). Counts only: no address is shown.",
        "status.daemon.up": "The daemon is running.",
        "status.daemon.down": "No daemon runs on this base: scheduled syncs are waiting.",
        "status.daemon.unknown": "Whether a daemon runs cannot be told.",
        "status.list": "List",
        "status.target": "Target",
        "status.last_run": "Last run",
        "status.duration": "Duration",
        "status.outcome": "Outcome",
        "status.changes": "Adds / updates / removals / flags",
        "status.error": "Error",
        "status.never": "never synced",
        "status.running": "running",
        "status.summary": "Next run: {next}. Open flags: {flags}. Pending double opt-ins: {pending}.",
        "status.next.no_target": "none (no target)",
        "status.next.no_schedule": "none scheduled (syncd sync only)",
        "status.next.scheduled": "{at}",
        "status.next.due": "now",
        "status.next.waiting_for_daemon": "{at}, when the daemon is up",
        "status.next.first": "as soon as the daemon is up (never synced)",
        "status.no_lists": "No list in the config.",
        "status.doi": "Double opt-in: {pending} pending, {dead} request(s) given up.",
        "status.inbox": "Webhooks: {backlog} waiting, {dead} dead letter(s).",
    },
}


def pick_language(query_lang: str | None, accept_language: str | None, default: str) -> str:
    """``?lang=`` first, then the browser's Accept-Language (by weight), then the config's default."""
    if query_lang in LANGUAGES:
        return query_lang  # type: ignore[return-value]
    best, best_q = None, 0.0
    for part in (accept_language or "").split(","):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        lang = tag.strip()[:2].lower()
        if lang in LANGUAGES and q > best_q:
            best, best_q = lang, q
    return best or default
