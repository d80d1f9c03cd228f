// Mailward default bases.
//
// Rules without tags mean "infected"; rules tagged `suspicious` mean
// "suspicious" (DESIGN 5). The rule name is the detection name shown in
// statistics, logs, raw records and the X-Mailward-AV header.
//
// The variables `filename` and `mime_type` are set by the scanner for every
// object (attachment, archive member, uuencoded file).

// The EICAR anti-virus test file (https://www.eicar.org/download-anti-malware-testfile/).
// It is written as a regular expression, its special characters escaped, so
// that this file does not itself look like the test file to other scanners.
// (Two halves joined by a loop over the first one's matches did the same,
// but yara-x warns of the loop as potentially slow at every load.)
rule EICAR_Test_File
{
    meta:
        description = "EICAR anti-virus test file"
    strings:
        $eicar = /X5O!P%@AP\[4\\PZX54\(P\^\)7CC\)7\}\$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!\$H\+H\*/
    condition:
        $eicar
}

// An executable or script behind a harmless-looking extension:
// "invoice.pdf.exe", "photo.jpg.scr".
rule Suspicious_Double_Extension : suspicious
{
    meta:
        description = "file name with a document extension followed by an executable one"
    condition:
        filename matches /\.(pdf|docx?|xlsx?|pptx?|rtf|txt|jpe?g|png|gif|zip|rar)[ _.]*\.(exe|scr|com|pif|bat|cmd|vbs|vbe|js|jse|wsf|hta|lnk|cpl|msi)$/i
}

// A Windows executable (MZ header) named as a document or picture.
rule Suspicious_Disguised_Executable : suspicious
{
    meta:
        description = "MZ executable whose name claims a document or picture"
    condition:
        uint16(0) == 0x5A4D and
        filename matches /\.(pdf|docx?|xlsx?|pptx?|rtf|txt|jpe?g|png|gif)$/i
}

// Right-to-left override in a file name hides the real extension
// ("invoice<RLO>fdp.exe" shows as "invoiceexe.pdf").
rule Suspicious_RTLO_File_Name : suspicious
{
    meta:
        description = "file name with a right-to-left override character"
    condition:
        filename contains "\xE2\x80\xAE"
}

// The ClamAV project's harmless test executable (Debian package
// clamav-testfiles, clam.exe), a stand-in for real malware in the packing
// tests: its tiny decoder loop, or its import of CLAMessageBoxA in a PE file.
rule ClamAV_Test_File
{
    meta:
        description = "ClamAV test file (clam.exe)"
    strings:
        $code = { BB 71 10 40 00 33 C0 50 50 8B F3 53 53 50 B0 29 40 30 04 66 AC 79 F9 BA 31 00 78 0D AD 50 FF 66 70 0E 1F BE 31 00 E9 E5 FF B4 09 CD 21 B4 4C CD 21 }
        $import = "CLAMessageBoxA"
    condition:
        $code or (uint16(0) == 0x5A4D and $import)
}
