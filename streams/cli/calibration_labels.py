"""The words of the calibration page (streams.cli.calibration_page) in each language it is written in.

Same conventions as streams.cli.review_labels: one dict per language with the same keys and the same `{fields}`.
"""

from __future__ import annotations

from typing import Final

from leadflow.streams.cli.review_labels import LANGS

EN: Final[dict[str, str]] = {
    "title": "Calibrating the MQL definition",
    "heading": "{history}: {leads} leads, conversion to {target}",
    "policy": "Policy measured",
    "policy_value": "{name}, version {version}",
    "fingerprint": "Fingerprint",
    "split": "Time-based split",
    "split_value": "fitted on {train} older leads (created {train_from} to {train_to}), tested on {test} newer ones",
    "method": "Intervals",
    "method_value": "AUC: 95% percentile bootstrap ({resamples} resamples); proportions: 95% Wilson score interval",
    "nothing": "Nothing to show.",
    "generated": "Made by leadflow calibrate from the lead history. Nothing here is applied: adopt a proposal by hand.",
    "roc_title": "How well each score ranks the leads (ROC)",
    "roc_fact": "Combined score: AUC {auc} on all leads ({low} to {high}); 0.5 is a coin toss, 1 is perfect.",
    "chance": "chance",
    "fpr": "Non-converters reached",
    "tpr": "Converters reached",
    "score_fit": "fit",
    "score_engagement": "engagement",
    "score_combined": "fit + engagement",
    "score_combined_test": "fit + engagement (newer leads)",
    "pp": "pp",
    "score_proposed": "proposed (newer leads)",
    "score": "Score",
    "auc": "AUC",
    "auc_all": "AUC, all leads",
    "auc_test": "AUC, newer leads",
    "ci": "95% interval",
    "lift_title": "Conversion and lift by score decile",
    "lift_fact": "The top decile of the combined score converts {conversion}, {lift} times the average ({base}).",
    "decile": "Decile",
    "leads": "Leads",
    "converters": "Converters",
    "conversion": "Conversion",
    "lift": "Lift",
    "score_range": "Scores",
    "capture": "Converters captured",
    "current": "current",
    "proposed": "proposed",
    "rule_title": "The MQL rule today",
    "rule_fact": (
        "Of {mqls} MQLs, {precision} converted (precision); the rule caught {recall} of the converters (recall) and "
        "missed {missed}; sales rejected {rejected} of the MQLs."
    ),
    "figure": "Figure",
    "value": "Value",
    "precision": "Precision (MQLs that converted)",
    "recall": "Recall (converters that were MQLs)",
    "missed": "Converters the rule missed",
    "rejected": "MQLs rejected by sales",
    "rejected_reason": "Rejected: {reason}",
    "evidence_title": "Hand-raisers and disqualifiers",
    "evidence_fact": "Found on the older leads; each with how its leads converted against the average ({base}).",
    "finding": "Finding",
    "verdict": "Verdict",
    "v_hand_raiser": "hand-raiser: immediate MQL",
    "v_disqualifier": "disqualifier: lowers fit",
    "v_qualifier": "qualifier: raises fit",
    "v_none": "no evidence",
    "changes_title": "Proposed changes",
    "changes_fact": "Fitted on the older leads (logistic regression; {pdo} points double the odds of converting).",
    "no_proposal": "No proposal: {reason}",
    "item": "Rule",
    "before": "Now",
    "after": "Proposed",
    "new_rule": "new",
    "points": "{points} points",
    "points_cap": "{points} points, cap {cap}",
    "half_life": "Decay half-life (days)",
    "min_fit": "MQL: minimum fit",
    "min_engagement": "MQL: minimum engagement",
    "hand_raisers": "Hand-raisers",
    "effect_title": "Expected effect",
    "effect_fact": "The history replayed under the proposed policy (the what-if of leadflow replay --compare).",
    "test_fact": (
        "Newer leads, replayed: MQLs {mqls_a} → {mqls_b}, precision {precision_a} → {precision_b}, recall "
        "{recall_a} → {recall_b}."
    ),
    "difference": "Difference",
}

PT_BR: Final[dict[str, str]] = {
    "title": "Calibrando a definição de MQL",
    "heading": "{history}: {leads} leads, conversão em {target}",
    "policy": "Política medida",
    "policy_value": "{name}, versão {version}",
    "fingerprint": "Impressão digital",
    "split": "Divisão no tempo",
    "split_value": (
        "ajustado em {train} leads mais antigos (criados de {train_from} a {train_to}), testado em {test} mais novos"
    ),
    "method": "Intervalos",
    "method_value": "AUC: bootstrap percentil 95% ({resamples} reamostragens); proporções: intervalo de Wilson 95%",
    "nothing": "Nada a mostrar.",
    "generated": (
        "Feito pelo leadflow calibrate a partir do histórico de leads. Nada é aplicado: adote a proposta à mão."
    ),
    "roc_title": "Quão bem cada pontuação ordena os leads (ROC)",
    "roc_fact": "Pontuação combinada: AUC {auc} em todos os leads ({low} a {high}); 0,5 é cara ou coroa, 1 é perfeito.",
    "chance": "acaso",
    "fpr": "Não convertidos alcançados",
    "tpr": "Convertidos alcançados",
    "score_fit": "perfil",
    "score_engagement": "engajamento",
    "score_combined": "perfil + engajamento",
    "score_combined_test": "perfil + engajamento (leads mais novos)",
    "pp": "p.p.",
    "score_proposed": "proposta (leads mais novos)",
    "score": "Pontuação",
    "auc": "AUC",
    "auc_all": "AUC, todos os leads",
    "auc_test": "AUC, leads mais novos",
    "ci": "Intervalo de 95%",
    "lift_title": "Conversão e lift por decil de pontuação",
    "lift_fact": "O decil mais alto da pontuação combinada converte {conversion}, {lift} vezes a média ({base}).",
    "decile": "Decil",
    "leads": "Leads",
    "converters": "Convertidos",
    "conversion": "Conversão",
    "lift": "Lift",
    "score_range": "Pontuações",
    "capture": "Convertidos capturados",
    "current": "atual",
    "proposed": "proposta",
    "rule_title": "A regra de MQL hoje",
    "rule_fact": (
        "De {mqls} MQLs, {precision} converteram (precisão); a regra pegou {recall} dos convertidos (recall) e "
        "perdeu {missed}; vendas rejeitou {rejected} dos MQLs."
    ),
    "figure": "Indicador",
    "value": "Valor",
    "precision": "Precisão (MQLs que converteram)",
    "recall": "Recall (convertidos que foram MQL)",
    "missed": "Convertidos que a regra perdeu",
    "rejected": "MQLs rejeitados por vendas",
    "rejected_reason": "Rejeitados: {reason}",
    "evidence_title": "Mãos levantadas e desqualificadores",
    "evidence_fact": (
        "Encontrados nos leads mais antigos; cada um com a conversão dos seus leads contra a média ({base})."
    ),
    "finding": "Achado",
    "verdict": "Veredito",
    "v_hand_raiser": "mão levantada: MQL imediato",
    "v_disqualifier": "desqualificador: reduz o perfil",
    "v_qualifier": "qualificador: aumenta o perfil",
    "v_none": "sem evidência",
    "changes_title": "Mudanças propostas",
    "changes_fact": (
        "Ajustadas nos leads mais antigos (regressão logística; {pdo} pontos dobram a chance de converter)."
    ),
    "no_proposal": "Sem proposta: {reason}",
    "item": "Regra",
    "before": "Hoje",
    "after": "Proposta",
    "new_rule": "nova",
    "points": "{points} pontos",
    "points_cap": "{points} pontos, teto {cap}",
    "half_life": "Meia-vida do decaimento (dias)",
    "min_fit": "MQL: perfil mínimo",
    "min_engagement": "MQL: engajamento mínimo",
    "hand_raisers": "Mãos levantadas",
    "effect_title": "Efeito esperado",
    "effect_fact": "O histórico reproduzido com a política proposta (o what-if do leadflow replay --compare).",
    "test_fact": (
        "Leads mais novos, reproduzidos: MQLs {mqls_a} → {mqls_b}, precisão {precision_a} → {precision_b}, recall "
        "{recall_a} → {recall_b}."
    ),
    "difference": "Diferença",
}

ES: Final[dict[str, str]] = {
    "title": "Calibrando la definición de MQL",
    "heading": "{history}: {leads} leads, conversión a {target}",
    "policy": "Política medida",
    "policy_value": "{name}, versión {version}",
    "fingerprint": "Huella",
    "split": "División en el tiempo",
    "split_value": (
        "ajustado con {train} leads más antiguos (creados de {train_from} a {train_to}), probado con {test} más nuevos"
    ),
    "method": "Intervalos",
    "method_value": "AUC: bootstrap percentil 95% ({resamples} remuestreos); proporciones: intervalo de Wilson 95%",
    "nothing": "Nada que mostrar.",
    "generated": (
        "Hecho por leadflow calibrate a partir del historial de leads. Nada se aplica: adopte la propuesta a mano."
    ),
    "roc_title": "Qué tan bien cada puntuación ordena los leads (ROC)",
    "roc_fact": "Puntuación combinada: AUC {auc} en todos los leads ({low} a {high}); 0,5 es azar, 1 es perfecto.",
    "chance": "azar",
    "fpr": "No convertidos alcanzados",
    "tpr": "Convertidos alcanzados",
    "score_fit": "perfil",
    "score_engagement": "interacción",
    "score_combined": "perfil + interacción",
    "score_combined_test": "perfil + interacción (leads más nuevos)",
    "pp": "p.p.",
    "score_proposed": "propuesta (leads más nuevos)",
    "score": "Puntuación",
    "auc": "AUC",
    "auc_all": "AUC, todos los leads",
    "auc_test": "AUC, leads más nuevos",
    "ci": "Intervalo del 95%",
    "lift_title": "Conversión y lift por decil de puntuación",
    "lift_fact": (
        "El decil más alto de la puntuación combinada convierte {conversion}, {lift} veces el promedio ({base})."
    ),
    "decile": "Decil",
    "leads": "Leads",
    "converters": "Convertidos",
    "conversion": "Conversión",
    "lift": "Lift",
    "score_range": "Puntuaciones",
    "capture": "Convertidos capturados",
    "current": "actual",
    "proposed": "propuesta",
    "rule_title": "La regla de MQL hoy",
    "rule_fact": (
        "De {mqls} MQLs, {precision} convirtieron (precisión); la regla captó {recall} de los convertidos (recall) y "
        "perdió {missed}; ventas rechazó {rejected} de los MQLs."
    ),
    "figure": "Indicador",
    "value": "Valor",
    "precision": "Precisión (MQLs que convirtieron)",
    "recall": "Recall (convertidos que fueron MQL)",
    "missed": "Convertidos que la regla perdió",
    "rejected": "MQLs rechazados por ventas",
    "rejected_reason": "Rechazados: {reason}",
    "evidence_title": "Manos levantadas y descalificadores",
    "evidence_fact": (
        "Hallados en los leads más antiguos; cada uno con la conversión de sus leads frente al promedio ({base})."
    ),
    "finding": "Hallazgo",
    "verdict": "Veredicto",
    "v_hand_raiser": "mano levantada: MQL inmediato",
    "v_disqualifier": "descalificador: baja el perfil",
    "v_qualifier": "calificador: sube el perfil",
    "v_none": "sin evidencia",
    "changes_title": "Cambios propuestos",
    "changes_fact": (
        "Ajustados con los leads más antiguos (regresión logística; {pdo} puntos duplican la chance de convertir)."
    ),
    "no_proposal": "Sin propuesta: {reason}",
    "item": "Regla",
    "before": "Hoy",
    "after": "Propuesta",
    "new_rule": "nueva",
    "points": "{points} puntos",
    "points_cap": "{points} puntos, tope {cap}",
    "half_life": "Vida media del decaimiento (días)",
    "min_fit": "MQL: perfil mínimo",
    "min_engagement": "MQL: interacción mínima",
    "hand_raisers": "Manos levantadas",
    "effect_title": "Efecto esperado",
    "effect_fact": "El historial reproducido con la política propuesta (el what-if de leadflow replay --compare).",
    "test_fact": (
        "Leads más nuevos, reproducidos: MQLs {mqls_a} → {mqls_b}, precisión {precision_a} → {precision_b}, recall "
        "{recall_a} → {recall_b}."
    ),
    "difference": "Diferencia",
}

LABELS: Final[dict[str, dict[str, str]]] = {"en": EN, "pt-BR": PT_BR, "es": ES}


def labels_for(lang: str) -> dict[str, str]:
    if lang not in LABELS:
        raise ValueError(f"unknown language {lang!r}: the calibration page is written in {', '.join(LANGS)}")
    return LABELS[lang]
