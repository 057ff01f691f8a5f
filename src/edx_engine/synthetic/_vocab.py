"""Vocabulary for the synthetic generator: names, places, IP ranges, agents, titles.

Everything here is invented; the shapes mimic what IDBx-style (Latin American,
Spanish-speaking) MOOC data looks like.
"""

from __future__ import annotations

# (country, weight, name culture)
COUNTRIES: list[tuple[str, float, str]] = [
    ("CO", 18, "es"), ("MX", 16, "es"), ("PE", 8, "es"), ("AR", 6, "es"), ("CL", 5, "es"),
    ("BR", 7, "pt"), ("EC", 4, "es"), ("GT", 2, "es"), ("BO", 2, "es"), ("PY", 1, "es"),
    ("UY", 1, "es"), ("VE", 3, "es"), ("HN", 1.5, "es"), ("SV", 1.5, "es"), ("CR", 1.5, "es"),
    ("PA", 1, "es"), ("DO", 1.5, "es"), ("NI", 0.7, "es"), ("ES", 5, "es"), ("US", 5, "en"),
    ("FR", 1.5, "fr"), ("PT", 1, "pt"), ("HT", 0.3, "fr"), ("CA", 0.5, "en"), ("DE", 0.4, "en"),
    ("IT", 0.4, "en"), ("IN", 0.8, "en"), ("GB", 0.4, "en"), ("", 4, "es"),
]

# Two-octet prefixes per country (plausible allocations; invented hosts).
IP_PREFIXES: dict[str, list[str]] = {
    "CO": ["181.49", "190.24", "186.86", "191.95"], "MX": ["189.203", "187.190", "201.141", "189.146"],
    "PE": ["190.232", "179.7", "200.121"], "AR": ["181.46", "190.17", "186.22"],
    "CL": ["190.100", "200.83", "186.10"], "BR": ["200.148", "177.72", "189.6", "200.222"],
    "EC": ["190.152", "186.4"], "GT": ["190.56", "181.174"], "BO": ["200.87", "181.115"],
    "PY": ["181.120"], "UY": ["167.56", "179.25"], "VE": ["190.198", "186.88"],
    "HN": ["190.4"], "SV": ["190.86"], "CR": ["201.191", "186.176"], "PA": ["200.46"],
    "DO": ["152.166", "200.88"], "NI": ["190.143"], "ES": ["83.45", "88.12", "79.150"],
    "US": ["73.162", "24.6", "98.210"], "FR": ["90.63", "86.246"], "PT": ["85.243", "94.61"],
    "HT": ["200.113"], "CA": ["142.116"], "DE": ["91.64"], "IT": ["93.44"], "IN": ["49.36", "117.214"],
    "GB": ["81.98"], "": ["41.203", "102.89", "45.160"],
}

ACCEPT_LANGUAGE = {
    "es": ["es-CO,es;q=0.9,en;q=0.8", "es-MX,es;q=0.9", "es-419,es;q=0.9,en;q=0.8", "es-ES,es;q=0.9,en;q=0.7",
           "es", "es-AR,es;q=0.9,en-US;q=0.8,en;q=0.7"],
    "pt": ["pt-BR,pt;q=0.9,en-US;q=0.8,en;q=0.7", "pt-PT,pt;q=0.9"],
    "fr": ["fr-FR,fr;q=0.9,en;q=0.8", "fr-CA,fr;q=0.9"],
    "en": ["en-US,en;q=0.9", "en-GB,en;q=0.9,es;q=0.8", "en-US,en;q=0.9,es;q=0.8"],
}

FIRST = {
    "es": ["María José", "José Luis", "Juan Carlos", "Ana María", "Luisa Fernanda", "Andrés", "Sofía", "Valentina",
           "Camila", "Mateo", "Santiago", "Sebastián", "Nicolás", "Martín", "Lucía", "Gabriela", "Daniela",
           "Alejandro", "Diego", "Carolina", "Verónica", "Iñaki", "Ramón", "Jesús", "Ángela", "Mónica", "Inés",
           "Raúl", "Óscar", "Germán", "Xiomara", "Yolanda", "Héctor", "Marisol", "Begoña", "Paola", "Jimena"],
    "pt": ["João", "Conceição", "Gonçalo", "Luís", "Antônio", "Márcia", "Fátima", "Thiago", "Letícia", "Júlia",
           "Sebastião", "Ana Luíza", "Vitória", "Caio", "Renê"],
    "fr": ["François", "Hélène", "Émilie", "Jérôme", "Zoé", "Loïc", "Gaëlle", "Noël", "Françoise", "Céline",
           "Anaïs", "Benoît"],
    "en": ["John", "Emily", "Michael", "Sarah", "Priya", "Rahul", "Jessica", "David", "Anna", "Luca"],
}
LAST = {
    "es": ["Pérez", "González", "Rodríguez", "Martínez", "García", "López", "Hernández", "Gómez", "Díaz",
           "Sánchez", "Ramírez", "Torres", "Flores", "Rivera", "Muñoz", "Nuñez", "Peña", "Ibáñez", "Castañeda",
           "Zúñiga", "Ordóñez", "Cárdenas", "Echeverría", "Aldana", "Quiñones", "Saldaña", "de la Cruz",
           "Vásquez", "Mejía", "Suárez"],
    "pt": ["Gonçalves", "Conceição", "Simões", "Magalhães", "Araújo", "Brandão", "da Silva", "Guimarães",
           "Falcão", "Assunção", "Lopes", "Carvalho"],
    "fr": ["Lefèvre", "Dubois", "Lemaître", "Girard", "Bérubé", "Rousseau", "Côté", "Gauthier", "Mercier"],
    "en": ["Smith", "O'Brien", "Johnson", "Patel", "Sharma", "Miller", "Rossi", "Müller"],
}

EMAIL_DOMAINS = ["gmail.com", "gmail.com", "gmail.com", "hotmail.com", "yahoo.com.mx", "outlook.es", "yahoo.es",
                 "uol.com.br", "orange.fr", "unal.edu.co", "hotmail.fr", "live.com", "protonmail.com"]

CITIES = {
    "CO": ["Bogotá", "Medellín", "Cali", "Barranquilla"], "MX": ["Ciudad de México", "Guadalajara", "Monterrey", "Mérida"],
    "PE": ["Lima", "Arequipa", "Cusco"], "AR": ["Buenos Aires", "Córdoba", "Rosario"], "CL": ["Santiago", "Valparaíso"],
    "BR": ["São Paulo", "Brasília", "Rio de Janeiro", "Belém"], "EC": ["Quito", "Guayaquil"], "GT": ["Ciudad de Guatemala"],
    "BO": ["La Paz", "Santa Cruz de la Sierra"], "PY": ["Asunción"], "UY": ["Montevideo"], "VE": ["Caracas", "Mérida"],
    "HN": ["Tegucigalpa"], "SV": ["San Salvador"], "CR": ["San José"], "PA": ["Ciudad de Panamá"],
    "DO": ["Santo Domingo"], "NI": ["Managua"], "ES": ["Madrid", "Barcelona", "Málaga"], "US": ["Washington", "Miami"],
    "FR": ["Paris", "Lyon", "Orléans"], "PT": ["Lisboa", "Porto"], "HT": ["Port-au-Prince"],
}

GOALS = [
    "Mejorar mi trabajo\ten el sector público",
    "Aprender más sobre políticas públicas.\nGracias!",
    "Quiero aplicar lo aprendido en mi municipio",
    "Actualizar mis conocimientos",
    "Obtener el certificado para mi carrera",
    "Aprender sobre gestión de proyectos \\ evaluación",
    "Melhorar minha atuação profissional",
    "Améliorer mes compétences en gestion publique",
    "Guardé mis notas en C:\\Users\\ana\\Documentos",
    "curiosidad",
    "Trabajo en una ONG y necesito herramientas prácticas.\nTambién me interesa el tema de género.",
]
BIOS = [
    "Economista. Trabajo en planeación.",
    "Ingeniera civil\ncon 10 años de experiencia",
    "Estudiante de ciencia política \\ relaciones internacionales",
    "Servidor público\tAlcaldía",
    "Professora de ensino médio",
]
MAILING = ["Calle 45 #12-34\nBogotá", "Av. Insurgentes Sur 1602, CDMX", "Rua Augusta, 1500 - São Paulo",
           "Jr. de la Unión 1020\tLima"]
LOCATIONS = ["Bogotá, Colombia", "CDMX", "Lima - Perú", "São Paulo", "Quito"]

# (code, title, chapters hint)
COURSE_DEFS: list[tuple[str, str]] = [
    ("GpRD1x", "Gestión para resultados en el desarrollo"),
    ("PPEV2x", "Políticas públicas basadas en evidencia"),
    ("APP3.1x", "Asociaciones público-privadas: implementación y financiación"),
    ("CLIMA-4x", "Cambio climático y desarrollo sostenible en América Latina"),
    ("ECON_BEH5x", "Economía del comportamiento aplicada a las políticas públicas"),
    ("LID6x", "Liderazgo y negociación en el sector público"),
    ("GOBDIG7x", "Gobierno digital: transformación y datos abiertos"),
    ("EDUFIN8x", "Educación financiera para todos"),
]
NEW_RUNS = ["3T2026", "2T2026", "1T2026_SP", "3T2026", "2T2026", "3T2026", "2T2026", "1T2026"]

CHAPTER_TITLES = [
    "Introducción y bienvenida", "El ciclo de las políticas públicas", "Diagnóstico y planificación",
    "Diseño de indicadores", "Presupuesto por resultados", "Seguimiento y evaluación", "Gestión del riesgo",
    "Transparencia y rendición de cuentas", "Casos de estudio: Colombia, México y Perú", "Cierre del curso",
    "Innovación en la gestión pública", "Datos abiertos y participación ciudadana",
]
SEQ_TITLES = ["Conceptos clave", "¿Por qué importa?", "Lectura guiada", "Ejercicio práctico", "Estudio de caso",
              "Evaluación del módulo", "Entrevista con expertos", "Herramientas", "Resumen"]
VIDEO_TITLES = ["Video: presentación del módulo", "Video: ¿Qué es la gestión por resultados?",
                "Video: entrevista con una alcaldesa", "Video: el caso de Medellín", "Vídeo: síntesis",
                "Video: Lecciones aprendidas en Perú", "Video: Évaluation d'impact"]
PROBLEM_TITLES = ["Pregunta", "Ejercicio", "Cuestionario", "Autoevaluación"]
HTML_TITLES = ["Lectura: marco conceptual", "Recursos adicionales", "Glosario", "Bienvenida", "Guía del curso"]

FORUM_TITLES = ["Duda sobre el ejercicio 3", "¿Cuándo se publica la nota final?", "Presentación: hola desde Bogotá",
                "Problema con el video del módulo 2", "Dúvida sobre o certificado", "Question sur l'évaluation",
                "¿Alguien de Perú?", "Recomendación de lecturas", "Error en la pregunta 4 (respuesta \"b\")"]
FORUM_BODIES = [
    "Hola a todos, no entiendo bien la diferencia entre producto y resultado. ¿Alguien me explica?",
    "Muchas gracias por el curso, ha sido muy útil para mi trabajo en la alcaldía.",
    "Olá! Sou de São Paulo e trabalho na prefeitura. Ótimo curso.",
    "Bonjour, je suis François, de Lyon. Très intéressant !",
    "En mi país (Perú) usamos un sistema similar.\n\nLes comparto el enlace del ministerio.",
    "Creo que la respuesta correcta es la \"c\", no la \"b\".",
    "¡Excelente explicación! Me quedó claro el concepto de línea de base.",
    "No puedo ver el video, me sale un error 403 \u2014 ¿a alguien más le pasa?",
]

AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/129.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/128.0.0.0 Safari/537.36 Edg/128.0.2739.79",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:131.0) Gecko/20100101 Firefox/131.0",
    "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/129.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_6_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/129.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Linux; Android 13; SM-A135M) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/25.0 Chrome/121.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 9; Moto G (6) Plus – Edición Única) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 6.1; Win64; x64; Trident/7.0; Equipo de María; rv:11.0) like Gecko",
]
MOBILE_AGENTS = [
    "edX/org.edx.mobile (4.2.1; OS Version 17.5.1 (Build 21F90))",
    "Dalvik/2.1.0 (Linux; U; Android 12; moto g(60) Build/S2RIS32.32-20-7-5) edX/org.edx.mobile/4.0.0",
    "Dalvik/2.1.0 (Linux; U; Android 11; Redmi Note 8 Pro – Edição Brasil Build/RP1A) edX/org.edx.mobile/3.3.1",
]
